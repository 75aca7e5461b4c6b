"""Odd but valid INSERTs run to ``done`` through a real worker with a safe storage key; valid
INSERTs no worker can serve end ``failed`` with an error naming the field and the fix, at
once and never retried, with events that replay to the row. Jobs go in as the owner UI
does: role ``authenticated`` with its JWT."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imagen_actors.core import events as ev
from imagen_actors.core import naming
from imagen_actors.db.gateway import Gateway
from tests.badinput.door import Door
from tests.support.jobs import OWNER, assert_replay_matches
from tests.support.worker import make_config, running_worker, wait_terminal

pytestmark = pytest.mark.db

KEY = re.compile(r"^\d{4}-\d{2}-\d{2}/(?P<slug>[a-z0-9]+(?:-[a-z0-9]+)*)-(?P<seed>\d+)\.png$")
INSERT = (
    "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height, style, seed, "
    "steps, opts) VALUES ($1, $2, $3, 64, 64, $4, $5, $6, $7::jsonb) RETURNING id"
)


@dataclass(frozen=True)
class Request:
    prompt: str
    backend: str = "mock"
    style: str | None = None
    seed: int | None = None
    steps: int | None = None
    opts: dict[str, Any] | None = None


def submit(door: Door, req: Request) -> uuid.UUID:
    opts = None if req.opts is None else json.dumps(req.opts)
    job = door.insert(
        "authenticated", INSERT, OWNER, req.prompt, req.backend, req.style, req.seed, req.steps,
        opts,
    )  # fmt: skip
    assert isinstance(job, uuid.UUID), job
    return job


ODD_BUT_VALID = [
    pytest.param(Request("ינשוף קטן קורא ספר בלילה"), "image", id="hebrew-rtl"),
    pytest.param(Request("\u200fبومة صغيرة تقرأ كتابا"), "image", id="arabic-rtl-mark"),
    pytest.param(Request("\u202eowl at night"), "owl-at-night", id="rtl-override"),
    pytest.param(Request("🦉🌙✨"), "image", id="emoji-only"),
    pytest.param(Request("👨‍👩‍👧 family of owls"), "family-of-owls", id="emoji-zwj"),
    pytest.param(Request("Café 🦉 — naïve Ørsted"), "cafe-naive-rsted", id="accents-emoji"),
    pytest.param(Request("x" * 4000), "x" * naming.SLUG_MAX, id="4000-ascii"),
    pytest.param(Request("🦉" * 4000), "image", id="4000-emoji"),
    pytest.param(Request("line one\n\tline two\r\n"), "line-one-line-two", id="tab-newline"),
    pytest.param(Request("../../etc/passwd"), "etc-passwd", id="path-traversal"),
    pytest.param(Request("${prompt} {slug} %s '; DROP TABLE x; --"), "prompt-slug-s-drop-table-x",
                 id="template-and-sql-text"),
    pytest.param(Request("owl", seed=2**53 - 1, steps=200), "owl", id="max-seed-and-steps"),
    pytest.param(Request("owl", opts={"guidance": "high", "unknown": [1, {"x": None}]}), "owl",
                 id="opts-ignored-by-mock"),
]  # fmt: skip


@pytest.fixture
def odd_job(door: Door, request: pytest.FixtureRequest) -> tuple[uuid.UUID, Request]:
    req: Request = request.param
    return submit(door, req), req


@pytest.mark.parametrize(("odd_job", "slug"), ODD_BUT_VALID, indirect=["odd_job"])
async def test_odd_prompt_runs_to_done_with_a_safe_key(
    door_dsn: str, tmp_path: Path, odd_job: tuple[uuid.UUID, Request], slug: str
) -> None:
    """Done, one image whose row keeps the prompt exactly, the request kept whole in event 1,
    an ASCII storage key <date>/<slug>-<seed>.png with the expected slug, object and file."""
    job, req = odd_job
    async with running_worker(make_config(tmp_path, door_dsn)) as (_h, gw):
        row = await wait_terminal(gw, job)
        assert (row["status"], row["error"]) == ("done", None)
        submitted = (await gw.load_events(job))[0]
        (image,) = await gw.fetch_sql("SELECT * FROM imagen.images WHERE job_id = $1", job)
        await assert_replay_matches(gw, job)
    assert isinstance(submitted, ev.JobSubmitted)
    kept = (submitted.prompt, submitted.seed, submitted.steps, submitted.opts)
    assert kept == (req.prompt, req.seed, req.steps, req.opts)
    key = KEY.fullmatch(image["storage_path"])
    assert key is not None, image["storage_path"]
    assert key.group("slug") == slug and image["storage_path"].isascii()
    assert image["prompt"] == req.prompt
    assert int(key.group("seed")) == image["seed"]
    assert (tmp_path / "objects" / image["bucket"] / image["storage_path"]).is_file()
    assert Path(image["metadata"]["local_path"]).is_file()


GENERATION_FAILED = [
    "JobSubmitted",
    "JobClaimed",
    "GenerationStarted",
    "GenerationFailed",
    "JobFailed",
]
# No worker offers the backend: failed in its claim's transaction, never sent to an Executor.
FAILED_IN_CLAIM = ["JobSubmitted", "JobClaimed", "JobFailed"]


async def _failed_at_once(gw: Gateway, job: uuid.UUID, expected: list[str]) -> dict[str, Any]:
    row = await wait_terminal(gw, job)
    types = [type(e).__name__ for e in await gw.load_events(job)]
    assert types == expected, types
    assert (row["status"], row["attempts"]) == ("failed", 1)  # permanent: no pointless retry
    await assert_replay_matches(gw, job)
    return row


@pytest.mark.parametrize(
    ("req", "names", "fix", "events"),
    [
        pytest.param(
            Request("owl", backend="flux-dev"),
            ["no worker has offered backend 'flux-dev' for 0 s",
             "(worker.unserved_backend_grace_s)"],
            "add it under backends: on a worker host, or fix the job's backend",
            FAILED_IN_CLAIM,
            id="unknown-backend",
        ),
        pytest.param(
            Request("owl", style="neon"),
            ["unknown style 'neon'", "presets: blog-header"],
            "(--style NAME)",
            GENERATION_FAILED,
            id="unknown-style",
        ),
    ],
)  # fmt: skip
async def test_unservable_job_fails_once_naming_field_and_fix(
    door: Door,
    door_dsn: str,
    tmp_path: Path,
    req: Request,
    names: list[str],
    fix: str,
    events: list[str],
) -> None:
    """Accepted by the database, which cannot know the worker's backends and presets: failed
    on the first claim (past worker.unserved_backend_grace_s, 0 s here, for a backend no
    worker offers) with the field, the choices and the fix; never retried."""
    job = submit(door, req)
    backends = {"mock": {"type": "mock"}, "mock-slow": {"type": "mock", "latency_ms": 10}}
    cfg = make_config(tmp_path, door_dsn, backends=backends, unserved_backend_grace_s=0)
    async with running_worker(cfg) as (_h, gw):
        row = await _failed_at_once(gw, job, events)
    for part in [*names, fix]:
        assert part in row["error"], row["error"]
