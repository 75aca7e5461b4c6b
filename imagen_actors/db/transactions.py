"""The steps of one transition, run inside a transaction on an asyncpg connection.

Kept apart from ``gateway`` (which owns the pool, the bridge crossing and error
translation) so each stays small. Nothing here imports asyncpg: ``conn`` is the connection
the gateway hands in.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Final

import attrs
import msgspec

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core import fold as fl
from imagen_actors.core.errors import ConcurrencyError, DatabaseError, JobNotFoundError
from imagen_actors.core.records import Decide, Transition
from imagen_actors.db.known_streams import KnownStreams
from imagen_actors.db.sql import query
from imagen_actors.observability.logs import job_fields

log = logging.getLogger("imagen_actors.db")

# At most this many unreadable jobs are failed by one claim before it gives up for now.
POISON_PER_CLAIM: Final = 20
# How much of a decoder's complaint goes into the job's error.
REASON_MAX: Final = 300


@attrs.frozen
class UndecodableJson:
    """A jsonb value the worker's decoder refused (too deep, a number beyond a double...).

    The pool's codec returns this instead of raising, so one bad row never breaks the read
    of the rows around it; whoever needs the value reports ``error``.
    """

    error: str
    chars: int


def decode_json(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        return UndecodableJson(f"{type(exc).__name__}: {exc}", len(text))


class PoisonedStreamError(DatabaseError):
    """A job's stored events cannot be decoded or replayed by this worker."""

    def __init__(self, job_id: uuid.UUID, seq: int, type_name: str, why: str) -> None:
        super().__init__(f"event {seq} ({type_name}) of job {job_id} cannot be read: {why}")
        self.job_id = job_id
        self.seq = seq
        self.type_name = type_name
        self.why = why


def event_from_record(job_id: uuid.UUID, rec: Any) -> ev.AnyEvent:
    """One job_events row as its event; PoisonedStreamError when the row cannot be one."""
    data = rec["data"]
    try:
        if isinstance(data, UndecodableJson):
            raise ValueError(f"its data is not readable JSON ({data.error})")
        return ev.from_row(
            rec["type"],
            data,
            job_id=job_id,
            occurred_at=rec["occurred_at"],
            actor=rec["actor"],
            worker_id=rec["worker_id"],
        )
    except (ValueError, TypeError, RecursionError, msgspec.ValidationError) as exc:
        # UnknownEventError and msgspec's refusals are ValueErrors.
        why = str(exc)[:REASON_MAX]
        raise PoisonedStreamError(job_id, rec["seq"], rec["type"], why) from None


async def init_connection(conn: Any) -> None:
    for typename in ("jsonb", "json"):
        await conn.set_type_codec(
            typename,
            encoder=lambda value: msgspec.json.encode(value).decode(),
            decoder=decode_json,
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
        after.progress_step,
        after.progress_total,
    )
    if status != "UPDATE 1":
        raise ConcurrencyError(f"job {job_id} moved past version {before.version} meanwhile")


@attrs.frozen
class Locked:
    """A job under its row lock: its state, the stream that folds to it, and the clock of
    the transaction."""

    state: fl.JobState
    prior: tuple[ev.Event, ...]
    now: datetime


async def locked_stream(conn: Any, job_id: uuid.UUID, rows: list[Any]) -> list[Any]:
    """The job's events as of now, given the rows read together with the row lock."""
    if rows and len(rows) != rows[0]["locked_version"]:
        # We waited for the lock while another writer committed: our statement's snapshot
        # predates its events. A new statement sees them (READ COMMITTED).
        rows = await conn.fetch(query("load_events_with_clock"), job_id)
    return rows


async def lock_job(conn: Any, job_id: uuid.UUID, known: KnownStreams | None = None) -> Locked:
    """Lock the job row and get its state: from ``known`` when this worker committed the
    job's last event (one short statement), else by loading and replaying the stream (one
    trip, two on lock contention or when the kept state is stale)."""
    if known is not None and job_id in known:
        row = await conn.fetchrow(query("lock_job"), job_id)
        if row is None:
            raise JobNotFoundError(f"no job {job_id}")
        hit = known.get(job_id, row["version"])
        if hit is not None:
            return Locked(hit[0], hit[1], row["db_now"])
        rows = await conn.fetch(query("load_events_with_clock"), job_id)
    else:
        rows = await locked_stream(
            conn, job_id, await conn.fetch(query("lock_and_load_events"), job_id)
        )
    if not rows:
        raise JobNotFoundError(f"no job {job_id}")
    return replay_stream(job_id, rows)


def replay_stream(job_id: uuid.UUID, rows: Sequence[Any]) -> Locked:
    """Decode and fold a locked stream; PoisonedStreamError when it cannot be replayed."""
    prior = tuple(event_from_record(job_id, r) for r in rows)
    try:
        return Locked(fl.replay(prior), prior, rows[0]["db_now"])
    except (fl.IllegalTransitionError, ValueError) as exc:
        seq, type_name = (rows[-1]["seq"], rows[-1]["type"]) if rows else (0, "-")
        raise PoisonedStreamError(job_id, seq, type_name, str(exc)[:REASON_MAX]) from None


async def advance(conn: Any, job_id: uuid.UUID, locked: Locked, decide: Decide) -> Transition:
    """Fold ``decide``'s events onto the locked state, append them and the projection."""
    new = tuple(decide(locked.state, locked.now))
    if not new:
        return Transition(locked.state, (), locked.prior)
    after = fl.replay(new, onto=locked.state)
    await append_and_project(conn, job_id, locked.state, new, after)
    return Transition(after, new, locked.prior)


async def claim_next(
    conn: Any,
    decide: Decide,
    offered: list[str] | None,
    absent_after_s: float,
    grace_s: float,
    *,
    unserved: bool = False,
) -> Transition | None:
    """Claim the oldest claimable job in this transaction; None when there is none.

    ``offered`` are this worker's backends (None: any backend). With ``unserved`` the claim
    looks instead at the jobs of backends that nobody has offered for ``absent_after_s``,
    once they waited ``grace_s``: such a job is claimed and failed (``dc.fail_unserved``).
    A job whose stream cannot be read is failed on the spot (``fail_poisoned``) and the next
    one is claimed, so no single job can stop the claims.
    """
    for _ in range(POISON_PER_CLAIM):
        if unserved:
            rows = await conn.fetch(
                query("claim_unserved_and_load_events"), offered or [], absent_after_s, grace_s
            )
        else:
            rows = await conn.fetch(query("claim_next_and_load_events"), offered)
        if not rows:
            return None
        job_id = rows[0]["job_id"]
        # Read before locked_stream, whose re-read (after a lock wait) has no such column.
        chosen = dc.fail_unserved(decide, grace_s) if rows[0]["unserved"] else decide
        rows = await locked_stream(conn, job_id, rows)
        try:
            return await advance(conn, job_id, replay_stream(job_id, rows), chosen)
        except PoisonedStreamError as exc:
            await fail_poisoned(conn, exc, rows[0]["db_now"], actor="claimer")
    return None


async def fail_poisoned(
    conn: Any, exc: PoisonedStreamError, now: Any, *, actor: str, worker_id: str | None = None
) -> None:
    """Append JobFailed (permanent, the reason named) without folding the unreadable stream."""
    error = (
        f"the worker cannot read event {exc.seq} ({exc.type_name}) of this job: {exc.why}; "
        "the job was failed so the queue goes on: submit it again within the request limits "
        "(docs/schema.md)"
    )
    failed = ev.JobFailed(
        job_id=exc.job_id,
        occurred_at=now,
        actor=actor,
        worker_id=worker_id,
        error=error,
        error_class="permanent",
    )
    version = await conn.fetchval(
        query("fail_poisoned_job"),
        exc.job_id,
        ev.event_data(failed),
        actor,
        worker_id,
        now,
        error,
    )
    log.warning(
        "failed job %s: its events cannot be read (%s)%s",
        exc.job_id,
        exc,
        "" if version is not None else " (it was already terminal)",
        extra=job_fields(exc.job_id),
    )


async def first_key_held(
    reserve: Callable[[str], Awaitable[tuple[str, uuid.UUID]]],
    candidates: Sequence[str],
    job_id: uuid.UUID,
) -> tuple[str, uuid.UUID]:
    """Reserve ``candidates`` in order until one is (or already was) ``job_id``'s: (that key,
    ``job_id``); when every one belongs to another job, the last one and its owner.
    ``reserve(key)`` returns (key, owner) as ``reserve_image_key`` does, so a job that
    reserved a key before gets that one back."""
    for candidate in candidates[:-1]:
        held = await reserve(candidate)
        if held[1] == job_id:
            return held
    return await reserve(candidates[-1])


async def reserve_key(
    conn: Any, bucket: str, candidates: Sequence[str], job_id: uuid.UUID
) -> tuple[str, uuid.UUID]:
    """``first_key_held`` on this transaction's connection."""

    async def reserve(key: str) -> tuple[str, uuid.UUID]:
        row = await conn.fetchrow(query("reserve_image_key"), bucket, key, job_id)
        return row["storage_path"], row["job_id"]

    return await first_key_held(reserve, candidates, job_id)
