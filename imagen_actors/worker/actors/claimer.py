"""Claimer: when the Executor has a free GPU slot, claim the oldest pending job.

Claims happen only after the Executor says it is ready, so a job is never ``running``
while it waits behind another. With nothing claimable it sleeps until a Wake, or until
the earliest backoff (``run_after``) of a requeued job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core.records import Transition
from imagen_actors.db.ports import ClaimQueue
from imagen_actors.observability.logs import job_fields
from imagen_actors.worker.actors.messages import ClaimedWork, Wake

# How long the hand-over of a just-claimed job may take before we give it back.
HANDOVER_TIMEOUT_S: Final = 5.0
RETRY_BASE_S: Final = 0.1
RETRY_CAP_S: Final = 10.0
log = logging.getLogger("imagen_actors.claimer")


async def claimer(
    gateway: ClaimQueue,
    *,
    worker_id: str,
    lease_s: float,
    backends: Sequence[str],
    backend_absent_after_s: float,
    unserved_backend_grace_s: float = 600.0,
    ready: trio.MemoryReceiveChannel[None],
    wakes: trio.MemoryReceiveChannel[Wake],
    work: trio.MemorySendChannel[ClaimedWork],
) -> None:
    """Claim for ``backends`` only, plus jobs whose backend no live worker offers once they
    waited ``unserved_backend_grace_s`` (the gateway fails those in the claim)."""
    decide = dc.claim(worker_id, lease_s)
    while True:
        try:
            await ready.receive()  # the Executor's slot is free
        except trio.EndOfChannel:
            return
        failures = 0
        while True:
            try:
                # Claim and hand over as one step: a committed claim must reach the Executor
                # or go back to the queue, whatever cancellation arrives meanwhile.
                with trio.CancelScope(shield=True):
                    transition = await gateway.claim(
                        decide,
                        backends=backends,
                        absent_after_s=backend_absent_after_s,
                        unserved_grace_s=unserved_backend_grace_s,
                    )
                    if transition is not None:
                        await _hand_over(gateway, worker_id, transition, work)
                if transition is not None:
                    break
                await _wait_for_work(gateway, wakes)
                failures = 0
            except Exception as exc:
                # Never crash while holding the Executor's ready token: it sends exactly one
                # per free slot, so a restarted Claimer would wait for a token that never
                # comes and the worker would stall. Retry with capped backoff instead.
                failures += 1
                delay = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (failures - 1))
                log.warning(
                    "claim failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay
                )
                await trio.sleep(delay)


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
            await work.send(ClaimedWork(submitted=submitted, claimed=claimed))
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
    await gateway.transition(
        claimed.job_id, dc.abort_in_flight(worker_id, f"hand-over {why}", actor="claimer")
    )


async def _wait_for_work(gateway: ClaimQueue, wakes: trio.MemoryReceiveChannel[Wake]) -> None:
    """Until a Wake, or the earliest run_after of a backed-off job, whichever is first."""
    seconds = await gateway.next_run_after()
    timeout = float("inf") if seconds is None else max(0.0, seconds) + 0.01
    with trio.move_on_after(timeout):
        try:
            await wakes.receive()
        except trio.EndOfChannel:
            await trio.sleep_forever()
