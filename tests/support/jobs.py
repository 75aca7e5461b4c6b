"""Helpers shared by DB tests: insert a job like the UI does, check replay == projection."""

from __future__ import annotations

import uuid
from typing import Any

from imagen_actors.core import fold
from imagen_actors.db.gateway import Gateway

OWNER = uuid.UUID("11111111-1111-4111-8111-111111111111")
OTHER_OWNER = uuid.UUID("22222222-2222-4222-8222-222222222222")


async def insert_job(
    gw: Gateway,
    prompt: str = "a tiny owl",
    *,
    backend: str = "mock",
    width: int = 64,
    height: int = 64,
    owner: uuid.UUID = OWNER,
    seed: int | None = None,
    max_attempts: int = 3,
    opts: dict[str, Any] | None = None,
) -> uuid.UUID:
    job_id: uuid.UUID = await gw.fetchval(
        "insert_job",
        owner,
        prompt,
        backend,
        width,
        height,
        None,
        None,
        seed,
        None,
        opts,
        max_attempts,
    )
    return job_id


async def assert_replay_matches(gw: Gateway, job_id: uuid.UUID) -> fold.JobState:
    """Replaying the job's stored events reproduces its imagen.jobs row exactly."""
    # Events and row are two reads; an actor may append in between, so retry until both
    # describe the same version.
    for _ in range(50):
        events = await gw.load_events(job_id)
        row = await gw.fetchrow("load_job", job_id)
        assert row is not None
        if row["version"] == len(events):
            break
    state = fold.replay(events)
    projected = {k: row[k] for k in fold.PROJECTED_COLUMNS}
    diff = {k: (v, projected[k]) for k, v in state.projection().items() if v != projected[k]}
    assert not diff, f"replay differs from the projection: {diff}"
    return state
