"""Keep a job's lease while work on it runs: the backend call (whose renewals also persist
progress), the upload, and a finished image waiting to be handed over.

A sibling task appends ``LeaseExtended`` (or what ``renew`` writes) every ``interval_s``
(default ``lease_s / 3``), so work that finishes sooner costs no extra write. If the job
turns out to be no longer ours (``LeaseLostError``) the work is cancelled and that error
raised; a renewal that fails on the database is logged and tried again at the next tick,
until ``lease_s`` has passed since the last good one: then the lease has expired, the work
is cancelled and ``LeaseLostError`` raised, so nothing is written for a job the Reaper may
already have handed on. The lease held is that of one claim (worker id and attempt): a
renewal for an attempt the job has moved past is refused like one for another worker.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core.errors import CancelRequestedError, DatabaseError, LeaseLostError
from imagen_actors.db.ports import Transitions
from imagen_actors.observability.logs import job_fields

T = TypeVar("T")
log = logging.getLogger("imagen_actors.lease")


async def holding_lease(
    gateway: Transitions,
    job_id: uuid.UUID,
    work: Callable[[], Awaitable[T]],
    *,
    worker_id: str,
    attempt: int,
    lease_s: float,
    actor: str,
    renew: Callable[[], Awaitable[None]] | None = None,
    interval_s: float | None = None,
    notice: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """``await work()`` while renewing the lease of ``worker_id``'s claim ``attempt``; the
    work's own exceptions pass unwrapped.

    ``renew`` replaces the plain ``LeaseExtended`` transition (the Executor persists progress
    with it); it must renew the same claim's lease too. Every renewal also looks for a cancel
    request (``CancelRequestedError``: the work is cancelled and that raised); ``notice``
    returns when a cancel may have been requested (a control notification), so the renewal
    that finds it runs at once instead of at the next interval.
    """
    lost: list[LeaseLostError | CancelRequestedError] = []
    result: list[T] = []
    failed: list[Exception] = []

    async def extend() -> None:
        await gateway.transition(
            job_id, dc.extend_lease(worker_id, lease_s, attempt=attempt, actor=actor)
        )

    async def renewing(cancel: trio.CancelScope) -> None:
        renewed_at = trio.current_time()
        while True:
            with trio.move_on_after(lease_s / 3 if interval_s is None else interval_s):
                if notice is None:
                    await trio.sleep_forever()
                await notice()
            try:
                await (renew or extend)()
                renewed_at = trio.current_time()
            except (LeaseLostError, CancelRequestedError) as exc:
                lost.append(exc)
                cancel.cancel()
                return
            except DatabaseError as exc:
                if trio.current_time() - renewed_at >= lease_s:
                    # The lease has run out unrenewed: the Reaper may hand the job on at
                    # any moment, so stop rather than upload (or render) for a job that is
                    # no longer ours.
                    lost.append(
                        LeaseLostError(
                            f"job {job_id}: the lease could not be renewed for {lease_s:g}s "
                            f"(worker.lease_s) and has expired; last error: {exc}"
                        )
                    )
                    cancel.cancel()
                    return
                log.warning(
                    "job %s: lease renewal failed (%s); will retry",
                    job_id,
                    exc,
                    extra=job_fields(job_id),
                )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(renewing, nursery.cancel_scope)
        # In this task, not a child (one task fewer a call); caught here so the caller sees
        # work's own exception, not a group. A lost lease cancels it through the scope.
        try:
            result.append(await work())
        except Exception as exc:
            failed.append(exc)
        nursery.cancel_scope.cancel()
    if result:
        return result[0]  # finished, even if a late renewal then found the job done
    if lost:
        raise lost[0]  # handed on or cancelled: whatever the work raised meanwhile is moot
    raise failed[0]
