"""Claimer: claim the oldest pending job among the backends that have a free slot.

Claims happen only for backends whose device has an Executor waiting (worker/actors/slots),
so a job is never ``running`` while it waits behind another, and a remote backend's job is
claimed while the GPU is busy. With nothing claimable it sleeps until a Wake, a slot or a
backend's health changes, or the earliest backoff (``run_after``) of a requeued job.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core.backoff import Backoff
from imagen_actors.core.errors import DatabaseError, DatabaseUnavailableError
from imagen_actors.core.records import Decide, Transition
from imagen_actors.db.ports import ClaimQueue
from imagen_actors.observability.logs import job_fields
from imagen_actors.worker.actors.messages import ClaimedWork, Wake
from imagen_actors.worker.actors.slots import SlotBoard
from imagen_actors.worker.health import STORE, HealthBoard

# How long the hand-over of a just-claimed job may take before we give it back.
HANDOVER_TIMEOUT_S: Final = 5.0
# The claim, hand-over and any give-back run shielded from cancellation; this bounds them
# (each statement is bounded by statement_timeout, 15 s) so a hung database cannot hold a
# shutdown forever. Past it, a claim that committed is left to requeue_own or the Reaper.
CLAIM_SHIELD_S: Final = 45.0
CLAIM_RETRY: Final = Backoff(base_s=0.1, cap_s=10.0)
log = logging.getLogger("imagen_actors.claimer")


async def claimer(
    gateway: ClaimQueue,
    *,
    worker_id: str,
    lease_s: float,
    backends: Sequence[str],
    backend_absent_after_s: float,
    unserved_backend_grace_s: float = 600.0,
    slots: SlotBoard,
    wakes: trio.MemoryReceiveChannel[Wake],
    health: HealthBoard | None = None,
) -> None:
    """Claim for ``backends`` only (with ``health``: only the healthy ones, and nothing
    while the object store is unhealthy; a change of health wakes the claimer), plus jobs
    whose backend no live worker offers once they waited ``unserved_backend_grace_s`` (the
    gateway fails those in the claim).

    Database errors are retried in place with backoff (the database comes back). Anything
    else is a bug: it propagates to the supervisor, which restarts this actor (the free
    slots are the Executors' to count, so none is lost), escalates past its restart
    intensity, and makes /readyz report the crash meanwhile. Returns when intake stops
    (``slots`` closed).
    """
    decide = dc.claim(worker_id, lease_s)
    failures = 0
    while True:
        changes = [slots.changed().wait] + ([] if health is None else [health.changed().wait])
        offered = slots.offered(_claimable(backends, health))
        if not offered:
            # No free slot for a healthy backend (or the store is down): the jobs wait
            # pending, attempts untouched, until a slot frees or a health probe answers.
            await _first_of(*changes)
            continue
        try:
            transition = await _claim_and_hand_over(
                gateway,
                worker_id,
                decide,
                offered,
                backend_absent_after_s,
                unserved_backend_grace_s,
                slots,
            )
            failures = 0
            if transition is None:
                await _wait_for_work(gateway, wakes, changes)
        except DatabaseError as exc:
            failures += 1
            delay = CLAIM_RETRY.delay_s(failures)
            log.warning("claim failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
            await trio.sleep(delay)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return


async def _claim_and_hand_over(
    gateway: ClaimQueue,
    worker_id: str,
    decide: Decide,
    backends: Sequence[str],
    absent_after_s: float,
    unserved_grace_s: float,
    slots: SlotBoard,
) -> Transition | None:
    # One step: a committed claim must reach the Executor or go back to the queue, whatever
    # cancellation arrives meanwhile.
    with trio.CancelScope(shield=True, deadline=trio.current_time() + CLAIM_SHIELD_S) as scope:
        transition = await gateway.claim(
            decide,
            backends=backends,
            absent_after_s=absent_after_s,
            unserved_grace_s=unserved_grace_s,
        )
        if transition is not None:
            await _hand_over(gateway, worker_id, transition, slots)
        return transition
    # Only reached when the deadline cancelled the scope.
    assert scope.cancelled_caught
    raise DatabaseUnavailableError(f"claim and hand-over did not finish within {CLAIM_SHIELD_S:g}s")


async def _hand_over(
    gateway: ClaimQueue,
    worker_id: str,
    transition: Transition,
    slots: SlotBoard,
) -> None:
    work = ClaimedWork.from_claim(transition)
    claimed = work.claimed
    with trio.move_on_after(HANDOVER_TIMEOUT_S) as handover:
        try:
            await slots.hand_over(work)
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    why = "timed out" if handover.cancelled_caught else "intake stopped"
    log.warning(
        "hand-over of job %s %s; giving it back",
        claimed.job_id,
        why,
        extra=job_fields(claimed.job_id),
    )
    abort = dc.abort_in_flight(
        worker_id, f"hand-over {why}", attempt=claimed.attempt, actor="claimer"
    )
    await gateway.transition(claimed.job_id, abort)


def _claimable(backends: Sequence[str], health: HealthBoard | None) -> list[str]:
    """The backends to claim for now: the healthy ones, none while the store is down."""
    if health is None:
        return list(backends)
    if not health.healthy(STORE):
        return []
    return health.healthy_among(backends)


async def _wait_for_work(
    gateway: ClaimQueue,
    wakes: trio.MemoryReceiveChannel[Wake],
    changes: Sequence[Callable[[], Awaitable[object]]],
) -> None:
    """Until a Wake, the earliest run_after of a backed-off job, or one of ``changes``: of
    health (a backend back: its jobs are claimable again) or of the free slots (a busy
    device's backlog is claimable again), whichever is first."""
    seconds = await gateway.next_run_after()
    timeout = float("inf") if seconds is None else max(0.0, seconds) + 0.01

    async def woken() -> None:
        try:
            await wakes.receive()
        except trio.EndOfChannel:
            await trio.sleep_forever()

    with trio.move_on_after(timeout):
        await _first_of(woken, *changes)


async def _first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return as soon as one of ``waits`` returns."""
    async with trio.open_nursery() as n:

        async def one(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            n.cancel_scope.cancel()

        for wait in waits:
            n.start_soon(one, wait)
