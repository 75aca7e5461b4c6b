"""Pure decisions: given a job's state and the database clock, which events to append.

Each function here is what an actor hands the gateway as ``decide``. They raise
``LeaseLostError`` when the job is no longer this worker's, and never do I/O.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from imagen_actors.core import events as ev
from imagen_actors.core.errors import ErrorClass, LeaseLostError
from imagen_actors.core.fold import JobState
from imagen_actors.core.records import Decide, DecideWithImage, DecideWithUsage

RETRY_BASE_S: Final = 2.0
RETRY_CAP_S: Final = 60.0
RETRY_JITTER: Final = 0.2


def _attempts(n: int) -> str:
    """``1 attempt``, ``2 attempts``: the count as people read it in job errors."""
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def retry_delay_s(attempt: int, *, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with +-20% jitter before retry number ``attempt`` (1-based)."""
    base = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** max(0, attempt - 1))
    return float(base * (1 - RETRY_JITTER + 2 * RETRY_JITTER * rng()))


def _header(state: JobState, now: datetime, actor: str, worker_id: str | None) -> dict[str, Any]:
    """The fields every event of a decision shares: which job, when, who."""
    return {"job_id": state.id, "occurred_at": now, "actor": actor, "worker_id": worker_id}


def _held(state: JobState, worker_id: str) -> None:
    if state.status != "running" or state.worker_id != worker_id:
        raise LeaseLostError(
            f"job {state.id} is {state.status} and held by {state.worker_id!r}, "
            f"not {worker_id!r}: its lease expired and it was handed on"
        )


def claim(worker_id: str, lease_s: float, actor: str = "claimer") -> Decide:
    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        return [
            ev.JobClaimed(
                **_header(state, now, actor, worker_id),
                attempt=state.attempts + 1,
                lease_expires_at=now + timedelta(seconds=lease_s),
            )
        ]

    return decide


def start_generation(worker_id: str, seed: int, actor: str = "executor") -> Decide:
    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        _held(state, worker_id)
        return [
            ev.GenerationStarted(
                **_header(state, now, actor, worker_id),
                backend=state.backend,
                seed=seed,
            )
        ]

    return decide


def extend_lease(worker_id: str, lease_s: float, actor: str = "executor") -> Decide:
    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        _held(state, worker_id)
        return [
            ev.LeaseExtended(
                **_header(state, now, actor, worker_id),
                lease_expires_at=now + timedelta(seconds=lease_s),
            )
        ]

    return decide


def record_progress(
    worker_id: str, step: int, total: int, lease_s: float, actor: str = "executor"
) -> Decide:
    """A throttled progress tick; it also renews the lease (the work is visibly alive)."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        _held(state, worker_id)
        return [
            ev.GenerationProgress(
                **_header(state, now, actor, worker_id),
                step=step,
                total=total,
            ),
            ev.LeaseExtended(
                **_header(state, now, actor, worker_id),
                lease_expires_at=now + timedelta(seconds=lease_s),
            ),
        ]

    return decide


def generation_succeeded(worker_id: str, outcome: ev.GenerationSucceeded, lease_s: float) -> Decide:
    """Record the result and renew the lease so the upload has a full lease to finish."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        _held(state, worker_id)
        return [
            msgspec.structs.replace(outcome, job_id=state.id, occurred_at=now, worker_id=worker_id),
            ev.LeaseExtended(
                **_header(state, now, outcome.actor, worker_id),
                lease_expires_at=now + timedelta(seconds=lease_s),
            ),
        ]

    return decide


def failure(
    worker_id: str,
    error: str,
    error_class: ErrorClass,
    actor: str,
    *,
    record_generation_failed: bool = True,
    rng: Callable[[], float] = random.random,
) -> Decide:
    """A failed attempt: requeue with backoff when transient and attempts remain, else fail."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        _held(state, worker_id)
        out: list[ev.Event] = []
        if record_generation_failed:
            out.append(
                ev.GenerationFailed(
                    **_header(state, now, actor, worker_id),
                    error=error,
                    error_class=error_class,
                )
            )
        if error_class == "transient" and state.attempts < state.max_attempts:
            delay = retry_delay_s(state.attempts, rng=rng)
            out.append(
                ev.JobRequeued(
                    **_header(state, now, actor, worker_id),
                    reason=f"transient failure on attempt {state.attempts}/{state.max_attempts}",
                    error=error,
                    retry_at=now + timedelta(seconds=delay),
                )
            )
        else:
            if error_class == "transient":
                error_text = f"{error} (gave up after {_attempts(state.attempts)})"
            else:
                error_text = error
            out.append(
                ev.JobFailed(
                    **_header(state, now, actor, worker_id),
                    error=error_text,
                    error_class=error_class,
                )
            )
        return out

    return decide


def complete(worker_id: str, stored: ev.ImageStored, actor: str = "uploader") -> DecideWithImage:
    """Complete the job with its stored image; nothing to do when this worker's completion
    already committed (a retry after the commit's reply was lost in a database restart)."""

    def decide(state: JobState, now: datetime, image_id: uuid.UUID) -> Sequence[ev.Event]:
        if state.status == "done" and state.worker_id == worker_id and state.image_id == image_id:
            return []
        _held(state, worker_id)
        return [
            ev.ImageStored(
                **_header(state, now, actor, worker_id),
                image_id=image_id,
                bucket=stored.bucket,
                storage_path=stored.storage_path,
                local_path=stored.local_path,
                bytes=stored.bytes,
                sha256=stored.sha256,
            ),
            ev.JobCompleted(
                **_header(state, now, actor, worker_id),
                image_id=image_id,
            ),
        ]

    return decide


def discard_objects(
    worker_id: str, bucket: str, keys: Sequence[str], actor: str = "reaper"
) -> Decide:
    """Record that a failed job's leftover objects are gone (once; after the deletes)."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        if state.status not in ("failed", "cancelled") or state.objects_discarded:
            return []
        return [
            ev.ImageDiscarded(
                **_header(state, now, actor, worker_id), bucket=bucket, storage_paths=tuple(keys)
            )
        ]

    return decide


def usage_recorded(
    worker_id: str | None, cost: float, actor: str = "usage_recorder"
) -> DecideWithUsage:
    def decide(state: JobState, now: datetime, usage_id: int) -> Sequence[ev.Event]:
        if state.usage_recorded:
            return []
        return [
            ev.UsageRecorded(
                **_header(state, now, actor, worker_id),
                usage_id=usage_id,
                cost_usd_estimate=cost,
            )
        ]

    return decide


def usage_failed(worker_id: str | None, error: str, actor: str = "usage_recorder") -> Decide:
    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        if state.usage_recorded:
            return []
        return [ev.UsageFailed(**_header(state, now, actor, worker_id), error=error)]

    return decide


def reap(worker_id: str, *, own: bool = False, actor: str = "reaper") -> Decide:
    """Requeue an expired (or, at start-up, our own) lease; fail it when attempts are used up.

    Re-checks under the row lock, so a lease extended meanwhile is left alone.
    """

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        if state.status != "running" or state.lease_expires_at is None:
            return []
        if own:
            if state.worker_id != worker_id:
                return []
            why = f"worker {worker_id} restarted while holding the job"
        else:
            if state.lease_expires_at >= now:
                return []
            why = f"lease held by {state.worker_id} expired at {state.lease_expires_at:%H:%M:%S}"
        if state.attempts >= state.max_attempts:
            return [
                ev.JobFailed(
                    **_header(state, now, actor, worker_id),
                    error=f"lease expired after {_attempts(state.attempts)} ({why})",
                    error_class="transient",
                )
            ]
        return [
            ev.JobRequeued(
                **_header(state, now, actor, worker_id),
                reason=why,
                error=state.error,
            )
        ]

    return decide


def abort_in_flight(worker_id: str, reason: str, actor: str = "supervisor") -> Decide:
    """Give a job back to the queue at once (second signal, crashed actor)."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        if state.status != "running" or state.worker_id != worker_id:
            return []
        # An operator's abort is not the job's fault: the attempt is given back.
        return [
            ev.JobRequeued(
                **_header(state, now, actor, worker_id),
                reason=reason,
                refund_attempt=True,
            )
        ]

    return decide
