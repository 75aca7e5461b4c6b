"""The steps of one transition, run inside a transaction on an asyncpg connection.

Kept apart from ``gateway`` (which owns the pool, the bridge crossing and error
translation) so each stays small. Nothing here imports asyncpg: ``conn`` is the connection
the gateway hands in.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from imagen_actors.core import events as ev
from imagen_actors.core import fold as fl
from imagen_actors.core.errors import ConcurrencyError, JobNotFoundError
from imagen_actors.core.records import Decide, Transition
from imagen_actors.db.sql import query


def event_from_record(job_id: uuid.UUID, rec: Any) -> ev.AnyEvent:
    return ev.from_row(
        rec["type"],
        rec["data"],
        job_id=job_id,
        occurred_at=rec["occurred_at"],
        actor=rec["actor"],
        worker_id=rec["worker_id"],
    )


async def init_connection(conn: Any) -> None:
    for typename in ("jsonb", "json"):
        await conn.set_type_codec(
            typename,
            encoder=lambda value: msgspec.json.encode(value).decode(),
            decoder=msgspec.json.decode,
            schema="pg_catalog",
        )


async def keep_session(_conn: Any) -> None:
    """Pool reset hook: send nothing.

    asyncpg's default reset runs a query (RESET ALL, UNLISTEN *, advisory unlock) on every
    release, half the server transactions of a job. Pool connections never change session
    state: no SET, no LISTEN (that has its own connection), advisory locks are released
    explicitly, and every transaction is closed by its context manager.
    """


async def append_and_project(
    conn: Any, job_id: uuid.UUID, before: fl.JobState, new: Sequence[ev.Event], after: fl.JobState
) -> None:
    """Insert the events after ``before`` and write ``after`` as the projection."""
    persisted = list(new)
    seqs = list(range(before.version + 1, before.version + 1 + len(persisted)))
    status = await conn.execute(
        query("append_and_project"),
        job_id,
        seqs,
        [type(e).__name__ for e in persisted],
        [ev.event_data(e) for e in persisted],
        [e.actor for e in persisted],
        [e.worker_id for e in persisted],
        [e.occurred_at for e in persisted],
        after.status,
        after.image_id,
        after.error,
        after.attempts,
        after.max_attempts,
        after.worker_id,
        after.lease_expires_at,
        after.updated_at,
        after.started_at,
        after.finished_at,
        after.version,
        after.run_after,
        before.version,
    )
    if status != "UPDATE 1":
        raise ConcurrencyError(f"job {job_id} moved past version {before.version} meanwhile")


async def locked_stream(conn: Any, job_id: uuid.UUID, rows: list[Any]) -> list[Any]:
    """The job's events as of now, given the rows read together with the row lock."""
    if rows and len(rows) != rows[0]["locked_version"]:
        # We waited for the lock while another writer committed: our statement's snapshot
        # predates its events. A new statement sees them (READ COMMITTED).
        rows = await conn.fetch(query("load_events_with_clock"), job_id)
    return rows


async def lock_job(conn: Any, job_id: uuid.UUID) -> list[Any]:
    """Lock the job row and load its current stream (one trip, two on lock contention)."""
    rows = await locked_stream(
        conn, job_id, await conn.fetch(query("lock_and_load_events"), job_id)
    )
    if not rows:
        raise JobNotFoundError(f"no job {job_id}")
    return rows


async def advance(conn: Any, job_id: uuid.UUID, rows: list[Any], decide: Decide) -> Transition:
    """Replay the locked stream, fold ``decide``'s events, append them and the projection."""
    prior = tuple(event_from_record(job_id, r) for r in rows)
    before = fl.replay(prior)
    new = tuple(decide(before, rows[0]["db_now"]))
    if not new:
        return Transition(before, (), prior)
    after = fl.replay(new, onto=before)
    await append_and_project(conn, job_id, before, new, after)
    return Transition(after, new, prior)
