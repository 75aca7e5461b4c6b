"""Claimer: when the Executor has a free GPU slot, claim the oldest pending job.

Claims happen only after the Executor says it is ready, so a job is never ``running``
while it waits behind another. With nothing claimable it sleeps until a Wake, or until
the earliest backoff (``run_after``) of a requeued job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import attrs
import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core import kept
from imagen_actors.core.backoff import Backoff
from imagen_actors.core.errors import DatabaseError, DatabaseUnavailableError
from imagen_actors.core.records import Decide, Transition
from imagen_actors.db.ports import ClaimQueue
from imagen_actors.observability.logs import job_fields
from imagen_actors.worker.actors.messages import ClaimedWork, Wake
from imagen_actors.worker.health import STORE, HealthBoard

# How long the hand-over of a just-claimed job may take before we give it back.
HANDOVER_TIMEOUT_S: Final = 5.0
# The claim, hand-over and any give-back run shielded from cancellation; this bounds them
# (each statement is bounded by statement_timeout, 15 s) so a hung database cannot hold a
# shutdown forever. Past it, a claim that committed is left to requeue_own or the Reaper.
CLAIM_SHIELD_S: Final = 45.0
CLAIM_RETRY: Final = Backoff(base_s=0.1, cap_s=10.0)
log = logging.getLogger("imagen_actors.claimer")


@attrs.define
class ReadyToken:
    """The Executor's "my slot is free" token, as the Claimer holds it.

    The Executor sends exactly one per free slot. This object outlives a Claimer restart, so
    a token received by a Claimer that then crashed is still held by the one that replaces
    it, instead of both waiting for each other forever.
    """

    channel: trio.MemoryReceiveChannel[None]
    held: bool = False

    async def take(self) -> None:
        if not self.held:
            await self.channel.receive()
            self.held = True

    def spend(self) -> None:
        self.held = False


async def claimer(
    gateway: ClaimQueue,
    *,
    worker_id: str,
    lease_s: float,
    backends: Sequence[str],
    backend_absent_after_s: float,
    unserved_backend_grace_s: float = 600.0,
    ready: ReadyToken,
    wakes: trio.MemoryReceiveChannel[Wake],
    work: trio.MemorySendChannel[ClaimedWork],
    health: HealthBoard | None = None,
) -> None:
    """Claim for ``backends`` only (with ``health``: only the healthy ones, and nothing
    while the object store is unhealthy; a change of health wakes the claimer), plus jobs
    whose backend no live worker offers once they waited ``unserved_backend_grace_s`` (the
    gateway fails those in the claim).

    Database errors are retried in place with backoff (the database comes back; the token
    stays held). Anything else is a bug: it propagates to the supervisor, which restarts
    this actor (the token survives in ``ready``), escalates past its restart intensity, and
    makes /readyz report the crash meanwhile.
    """
    decide = dc.claim(worker_id, lease_s)
    while True:
        try:
            await ready.take()  # the Executor's slot is free
        except trio.EndOfChannel:
            return
        failures = 0
        while True:
            offered = _claimable(backends, health)
            if not offered:
                # Every backend (or the store) is down: the jobs wait pending, attempts
                # untouched, until a probe or a finished job marks one healthy again.
                assert health is not None
                await health.wait_changed()
                continue
            try:
                transition = await _claim_and_hand_over(
                    gateway,
                    worker_id,
                    decide,
                    offered,
                    backend_absent_after_s,
                    unserved_backend_grace_s,
                    work,
                )
                if transition is not None:
                    ready.spend()
                    break
                await _wait_for_work(gateway, wakes, health)
                failures = 0
            except DatabaseError as exc:
                failures += 1
                delay = CLAIM_RETRY.delay_s(failures)
                log.warning(
                    "claim failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay
                )
                await trio.sleep(delay)


async def _claim_and_hand_over(
    gateway: ClaimQueue,
    worker_id: str,
    decide: Decide,
    backends: Sequence[str],
    absent_after_s: float,
    unserved_grace_s: float,
    work: trio.MemorySendChannel[ClaimedWork],
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
            await _hand_over(gateway, worker_id, transition, work)
        return transition
    # Only reached when the deadline cancelled the scope.
    assert scope.cancelled_caught
    raise DatabaseUnavailableError(f"claim and hand-over did not finish within {CLAIM_SHIELD_S:g}s")


async def _hand_over(
    gateway: ClaimQueue,
    worker_id: str,
    transition: Transition,
    work: trio.MemorySendChannel[ClaimedWork],
) -> None:
    (claimed,) = [e for e in transition.events if isinstance(e, ev.JobClaimed)]
    submitted = transition.prior[0]
    assert isinstance(submitted, ev.JobSubmitted)
    with trio.move_on_after(HANDOVER_TIMEOUT_S) as handover:
        try:
            image = kept.kept_generation(transition.prior)
            await work.send(ClaimedWork(submitted=submitted, claimed=claimed, kept=image))
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    why = "timed out" if handover.cancelled_caught else "the executor is gone"
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
    gateway: ClaimQueue, wakes: trio.MemoryReceiveChannel[Wake], health: HealthBoard | None
) -> None:
    """Until a Wake, the earliest run_after of a backed-off job, or a change of health
    (a backend back: its jobs are claimable again), whichever is first."""
    seconds = await gateway.next_run_after()
    timeout = float("inf") if seconds is None else max(0.0, seconds) + 0.01
    with trio.move_on_after(timeout):
        async with trio.open_nursery() as n:

            async def woken() -> None:
                try:
                    await wakes.receive()
                except trio.EndOfChannel:
                    await trio.sleep_forever()
                n.cancel_scope.cancel()

            async def health_changed() -> None:
                assert health is not None
                await health.wait_changed()
                n.cancel_scope.cancel()

            n.start_soon(woken)
            if health is not None:
                n.start_soon(health_changed)
