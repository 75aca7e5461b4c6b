"""Reaper: at start-up requeue what this worker_id held (it restarted); then, every few
seconds, requeue expired leases (or fail them once attempts are used up), discard what
failed jobs left in storage, and fail the pending jobs of a backend that has been
unavailable for longer than ``worker.max_wait_s``. A live lease is never touched: each
decision is re-checked under the row lock."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import attrs
import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core.errors import DatabaseError
from imagen_actors.core.fold import JobState
from imagen_actors.db.ports import ReapQueue
from imagen_actors.observability.logs import job_fields
from imagen_actors.storage.base import ObjectStore
from imagen_actors.worker.actors.janitor import discard_leftovers, recheck_tombstones
from imagen_actors.worker.health import STORE, HealthBoard

BATCH: Final = 100
log = logging.getLogger("imagen_actors.reaper")


async def requeue_own(gateway: ReapQueue, worker_id: str) -> int:
    held = await gateway.running_held_by(worker_id)
    for job_id in held:
        t = await gateway.transition(job_id, dc.reap(worker_id, own=True))
        if t.events:
            log.warning(
                "job %s: requeued at start-up (%s held it)",
                job_id,
                worker_id,
                extra=job_fields(job_id),
            )
    return len(held)


async def reap_expired(gateway: ReapQueue, worker_id: str) -> int:
    n = 0
    while True:
        expired = await gateway.expired_leases(BATCH)
        for job_id in expired:
            t = await gateway.transition(job_id, dc.reap(worker_id))
            if t.events:
                n += 1
                log.warning(
                    "job %s: %s",
                    job_id,
                    type(t.events[0]).__name__,
                    extra=job_fields(job_id),
                )
        if len(expired) < BATCH:
            return n


@attrs.frozen(kw_only=True)
class Patience:
    """``worker.max_wait_s`` and what the claim that fails an overdue job needs."""

    max_wait_s: float
    lease_s: float
    absent_after_s: float
    unserved_grace_s: float


async def fail_overdue(
    gateway: ReapQueue,
    board: HealthBoard,
    patience: Patience,
    *,
    worker_id: str,
    backends: Sequence[str],
) -> int:
    """Fail the pending jobs of each backend this worker has had unhealthy (or of every
    backend, when it is the store) for longer than max_wait_s, unless a live worker offers
    that backend and reports it (and its store) healthy: that one will run them. Returns
    how many backends' jobs were failed."""
    now = trio.current_time()
    overdue = {
        name: state
        for name, state in board.unhealthy().items()
        if state.since_t is not None and now - state.since_t >= patience.max_wait_s
    }
    if not overdue:
        return 0
    reported = await gateway.unhealthy_dependencies(patience.absent_after_s)
    failed = 0
    for backend in backends:
        cause = STORE if STORE in overdue else backend
        state = overdue.get(cause)
        if state is None or state.since is None:
            continue
        sick = {r["worker_id"] for r in reported if r["dependency"] in (backend, STORE)}
        offering = await gateway.live_workers_offering(backend, patience.absent_after_s)
        if offering > len(sick):
            continue  # another live worker has it healthy
        reason = dc.unavailable_reason(
            cause, state.since, state.reason or "unknown", patience.max_wait_s
        )
        decide = dc.fail_in_claim(
            dc.claim(worker_id, patience.lease_s, actor="reaper"), _always(reason)
        )
        # The claim fails each job it takes in the same transaction and goes on to the
        # next one, until none of this backend's jobs is claimable.
        await gateway.claim(
            decide,
            backends=[backend],
            absent_after_s=patience.absent_after_s,
            unserved_grace_s=patience.unserved_grace_s,
        )
        failed += 1
        log.warning("backend %s: %s; its pending jobs were failed", backend, reason)
    return failed


def _always(reason: str) -> Callable[[JobState], str]:
    return lambda _state: reason


async def reaper(
    gateway: ReapQueue,
    store: ObjectStore,
    *,
    worker_id: str,
    interval_s: float,
    backends: Sequence[str],
    health: HealthBoard | None = None,
    patience: Patience | None = None,
) -> None:
    """The periodic half; ``requeue_own`` runs once before any actor starts, never on a
    restart of this actor (our own Executor may hold jobs by then).

    Three loops, each every ``interval_s``, so none can hold up another:

    - the heartbeat in ``imagen.workers`` (the backends this worker offers), which other
      workers read to tell a job nobody can run from one whose host is just restarting;
    - reaping expired leases;
    - discarding what failed jobs left in storage (``janitor``; the first pass looks at
      every failed job, later ones at the last hour's), whose deletes can be slow when
      storage is;
    - with ``health`` and ``patience``: failing the jobs that waited past max_wait_s for an
      unhealthy backend (``fail_overdue``). The heartbeat writes ``health``'s snapshot.

    A pass that fails on the database is logged and tried again at the next interval: the
    Reaper has nothing in hand to lose, and crashing on every pass of an outage would
    exhaust the supervisor's restart budget and take the whole worker down with it.
    """

    async def every_interval(what: str, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await step()
            except DatabaseError as exc:
                log.warning(
                    "%s failed (%s: %s); retrying in %.1fs",
                    what,
                    type(exc).__name__,
                    exc,
                    interval_s,
                )
            await trio.sleep(interval_s)

    recent_only = False

    async def heartbeat() -> None:
        snapshot = health.snapshot() if health is not None else None
        await gateway.worker_seen(worker_id, backends, health=snapshot)

    async def patient() -> None:
        if health is not None and patience is not None:
            await fail_overdue(gateway, health, patience, worker_id=worker_id, backends=backends)

    async def reap() -> None:
        await reap_expired(gateway, worker_id)

    async def clean() -> None:
        nonlocal recent_only
        await discard_leftovers(gateway, store, worker_id, recent_only=recent_only)
        recent_only = True
        # Every 60 passes (5 min at the default 5 s), for the janitor's 24 h window.
        await recheck_tombstones(gateway, store, every_s=60 * interval_s)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(every_interval, "heartbeat", heartbeat)
        nursery.start_soon(every_interval, "reaping", reap)
        nursery.start_soon(every_interval, "discarding leftovers", clean)
        nursery.start_soon(every_interval, "max_wait_s", patient)
