"""Reaper: at start-up requeue what this worker_id held (it restarted); then, every few
seconds, requeue expired leases (or fail them once attempts are used up) and discard what
failed jobs left in storage. A live lease is never touched: each decision is re-checked
under the row lock."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core.errors import DatabaseError
from imagen_actors.db.ports import ReapQueue
from imagen_actors.observability.logs import job_fields
from imagen_actors.storage.base import ObjectStore
from imagen_actors.worker.actors.janitor import discard_leftovers, recheck_tombstones

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


async def reaper(
    gateway: ReapQueue,
    store: ObjectStore,
    *,
    worker_id: str,
    interval_s: float,
    backends: Sequence[str],
) -> None:
    """The periodic half; ``requeue_own`` runs once before any actor starts, never on a
    restart of this actor (our own Executor may hold jobs by then).

    Three loops, each every ``interval_s``, so none can hold up another:

    - the heartbeat in ``imagen.workers`` (the backends this worker offers), which other
      workers read to tell a job nobody can run from one whose host is just restarting;
    - reaping expired leases;
    - discarding what failed jobs left in storage (``janitor``; the first pass looks at
      every failed job, later ones at the last hour's), whose deletes can be slow when
      storage is.

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
        await gateway.worker_seen(worker_id, backends)

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
