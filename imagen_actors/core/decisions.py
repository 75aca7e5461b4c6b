"""Pure decisions: given a job's state and the database clock, which events to append.

Each function here is what an actor hands the gateway as ``decide``: it builds its events
once, from the values handed to it and the locked state, and never does I/O. The Executor's
and Uploader's decisions are fenced by the claim they work for (worker id *and* attempt):
they raise ``LeaseLostError`` when the job is no longer that claim's, even if the same
worker has claimed it again since.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec

from imagen_actors.core import events as ev
from imagen_actors.core.backoff import Backoff, Rng
from imagen_actors.core.error_text import shown
from imagen_actors.core.errors import CancelRequestedError, ErrorClass, LeaseLostError, is_outage
from imagen_actors.core.fold import GenerationOutcome, JobState
from imagen_actors.core.naming import default_seed
from imagen_actors.core.records import CompletionRows, Decide, DecideFor, ImageRow

# Before the retry of a job after a transient failure on attempt n: up to 2 s * 2**(n-1).
RETRY_BACKOFF: Final = Backoff(base_s=2.0, cap_s=60.0)
# Outages refunded per job; past this the fault counts as a transient attempt. A job waits
# pending while its dependency is down, so only a fault its probe does not see (an upload
# that times out while the bucket answers) can repeat: this bounds that loop.
MAX_OUTAGE_REFUNDS: Final = 5


def _attempts(n: int) -> str:
    """``1 attempt``, ``2 attempts``: the count as people read it in job errors."""
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def retry_delay_s(attempt: int, *, rng: Rng = random.random) -> float:
    """How long a job waits before retry number ``attempt`` (1-based): full jitter."""
    return RETRY_BACKOFF.delay_s(attempt, rng)


def _header(state: JobState, now: datetime, actor: str, worker_id: str | None) -> dict[str, Any]:
    """The fields every event of a decision shares: which job, when, who."""
    return {"job_id": state.id, "occurred_at": now, "actor": actor, "worker_id": worker_id}


# What a generation produced, as both GenerationSucceeded and GenerationReused carry it.
OUTCOME_FIELDS: Final = tuple(
    f.name
    for f in msgspec.structs.fields(ev.Generated)
    if f.name not in {g.name for g in msgspec.structs.fields(ev.Event)}
)


def outcome_fields(outcome: object) -> dict[str, Any]:
    """The OUTCOME_FIELDS of a GenerationOutcome or a recorded GenerationSucceeded."""
    return {name: getattr(outcome, name) for name in OUTCOME_FIELDS}


def lease_renewed(
    state: JobState, now: datetime, actor: str, worker_id: str, lease_s: float
) -> ev.LeaseExtended:
    """A renewal of the lease by ``worker_id`` for ``lease_s`` from ``now``."""
    return ev.LeaseExtended(
        **_header(state, now, actor, worker_id),
        lease_expires_at=now + timedelta(seconds=lease_s),
    )


def _held(state: JobState, worker_id: str, attempt: int) -> None:
    """The job is still running the claim this decision works for: ours, same attempt."""
    if state.status != "running" or state.worker_id != worker_id:
        raise LeaseLostError(
            f"job {state.id} is {state.status} and held by {state.worker_id!r}, "
            f"not {worker_id!r}: its lease expired and it was handed on"
        )
    if state.attempts != attempt:
        raise LeaseLostError(
            f"job {state.id} is running attempt {state.attempts}, not attempt {attempt}: "
            f"the lease of attempt {attempt} expired and {worker_id!r} claimed the job again"
        )


def _working(state: JobState, worker_id: str, attempt: int) -> None:
    """Held, and nobody asked to cancel it: the work may go on."""
    _held(state, worker_id, attempt)
    if state.cancel_requested:
        reason = state.cancel_reason or "cancel requested"
        raise CancelRequestedError(f"job {state.id}: cancel requested ({reason})", reason=reason)


def claim(worker_id: str, lease_s: float, actor: str = "claimer") -> Decide:
    """Claim the job and start its generation in the same transaction: a job is claimed only
    for a slot that is waiting for it (worker/actors/slots), so claiming is starting, and a
    separate start transaction would only hold the GPU idle for one more commit."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        header = _header(state, now, actor, worker_id)
        return [
            ev.JobClaimed(
                **header,
                attempt=state.attempts + 1,
                lease_expires_at=now + timedelta(seconds=lease_s),
            ),
            ev.GenerationStarted(**header, backend=state.backend, seed=job_seed(state)),
        ]

    return decide


def job_seed(state: JobState) -> int:
    """The seed a job renders with: its own, else one derived from its id (core/naming)."""
    return state.seed if state.seed is not None else default_seed(state.id)


def extend_lease(
    worker_id: str, lease_s: float, *, attempt: int, actor: str = "executor"
) -> Decide:
    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        _working(state, worker_id, attempt)
        return [lease_renewed(state, now, actor, worker_id, lease_s)]

    return decide


def prediction_created(
    worker_id: str, external_id: str, *, attempt: int, actor: str = "executor"
) -> Decide:
    """The backend has a paid run of its own under ``external_id``: recorded at once (even
    with a cancel pending: the run exists and is being stopped), so a later attempt can
    resume it."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        _held(state, worker_id, attempt)
        return [
            ev.PredictionCreated(
                **_header(state, now, actor, worker_id),
                backend=state.backend,
                external_id=external_id,
            )
        ]

    return decide


def record_progress(
    worker_id: str, step: int, total: int, lease_s: float, *, attempt: int, actor: str = "executor"
) -> Decide:
    """A throttled progress tick; it also renews the lease (the work is visibly alive)."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        _working(state, worker_id, attempt)
        return [
            ev.GenerationProgress(
                **_header(state, now, actor, worker_id),
                step=step,
                total=total,
            ),
            lease_renewed(state, now, actor, worker_id, lease_s),
        ]

    return decide


def generation_succeeded(
    worker_id: str,
    outcome: GenerationOutcome,
    lease_s: float,
    *,
    attempt: int,
    actor: str = "executor",
) -> Decide:
    """Record the result and renew the lease so the upload has a full lease to finish."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        _working(state, worker_id, attempt)
        return [
            ev.GenerationSucceeded(
                **_header(state, now, actor, worker_id), **outcome_fields(outcome)
            ),
            lease_renewed(state, now, actor, worker_id, lease_s),
        ]

    return decide


def failure(
    worker_id: str,
    error: str,
    error_class: ErrorClass,
    actor: str,
    *,
    attempt: int,
    record_generation_failed: bool = True,
    kept_image: str | None = None,
    wait: bool = True,
    rng: Rng = random.random,
) -> Decide:
    """A failed attempt: requeue with backoff when transient and attempts remain, else fail;
    a dependency or configuration fault requeues at once with the attempt refunded
    (``kept_image``: where the generated image waits for the retry's upload), at most
    MAX_OUTAGE_REFUNDS times; without ``wait`` (a one-shot CLI run) it fails the job."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        _held(state, worker_id, attempt)
        out: list[ev.Event] = []
        if record_generation_failed:
            out.append(
                ev.GenerationFailed(
                    **_header(state, now, actor, worker_id),
                    error=error,
                    error_class=error_class,
                    shown_error=shown(error),
                )
            )
        patient = is_outage(error_class) and wait
        if patient and state.outage_refunds < MAX_OUTAGE_REFUNDS:
            # Not the job's fault: the backend or store is down or set up wrong. The job
            # waits pending with its attempt given back while the dependency is probed.
            out.append(
                ev.JobRequeued(
                    **_header(state, now, actor, worker_id),
                    reason=f"{error_class} fault: {error}",
                    error=error,
                    shown_error=shown(error),
                    refund_attempt=True,
                    kept_image=kept_image,
                    fault=error_class,
                )
            )
            return out
        text, kind = error, error_class
        if patient:
            # The probe keeps passing while this job keeps meeting the fault: count it.
            text = f"{error} (after {MAX_OUTAGE_REFUNDS} refunded outages; now an attempt)"
            kind = "transient"
        if kind == "transient" and state.attempts < state.max_attempts:
            delay = retry_delay_s(state.attempts, rng=rng)
            out.append(
                ev.JobRequeued(
                    **_header(state, now, actor, worker_id),
                    reason=f"transient failure on attempt {state.attempts}/{state.max_attempts}",
                    error=text,
                    shown_error=shown(text),
                    retry_at=now + timedelta(seconds=delay),
                    kept_image=kept_image,
                )
            )
        else:
            if kind == "transient":
                text = f"{text} (gave up after {_attempts(state.attempts)})"
            out.append(
                ev.JobFailed(
                    **_header(state, now, actor, worker_id),
                    error=text,
                    error_class=kind,
                    shown_error=shown(text),
                )
            )
        return out

    return decide


def complete(
    worker_id: str,
    image: ImageRow,
    *,
    attempt: int,
    local_path: str | None,
    cost_usd_estimate: float = 0.0,
    actor: str = "uploader",
) -> DecideFor[CompletionRows]:
    """Complete the job with ``image`` once its rows have ids, and record its usage row in
    the same transaction when there is one; nothing to do when this claim's completion
    already committed (a retry after the commit's reply was lost in a database restart)."""

    def for_rows(rows: CompletionRows) -> Decide:
        def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
            if (
                state.status == "done"
                and state.worker_id == worker_id
                and state.attempts == attempt
                and state.image_id == rows.image_id
            ):
                return []
            _held(state, worker_id, attempt)
            out: list[ev.Event] = [
                ev.ImageStored(
                    **_header(state, now, actor, worker_id),
                    image_id=rows.image_id,
                    bucket=image.bucket,
                    storage_path=image.storage_path,
                    local_path=local_path,
                    bytes=image.bytes,
                    sha256=image.sha256,
                ),
                ev.JobCompleted(
                    **_header(state, now, actor, worker_id),
                    image_id=rows.image_id,
                    cancel_came_too_late=state.cancel_requested,
                ),
            ]
            if state.usage_recorded:
                return out
            if rows.usage_id is not None:
                out.append(
                    ev.UsageRecorded(
                        **_header(state, now, actor, worker_id),
                        usage_id=rows.usage_id,
                        cost_usd_estimate=cost_usd_estimate,
                    )
                )
            elif rows.usage_error is not None:
                out.append(
                    ev.UsageFailed(**_header(state, now, actor, worker_id), error=rows.usage_error)
                )
            return out

        return decide

    return for_rows


def cancelled(worker_id: str, *, attempt: int, actor: str) -> Decide:
    """The work of claim ``attempt`` stopped on the cancel request: the job ends cancelled
    (no image row; an object already uploaded is discarded by the janitor)."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        _held(state, worker_id, attempt)
        reason = state.cancel_reason or "cancel requested"
        return [ev.JobCancelled(**_header(state, now, actor, worker_id), reason=reason)]

    return decide


# The queue's own decisions live beside these; callers use them through this module.
from imagen_actors.core.queue_decisions import (  # noqa: E402
    abort_in_flight,
    discard_objects,
    fail_in_claim,
    fail_unserved,
    reap,
    unavailable_reason,
    unserved_reason,
)

__all__ = [
    "abort_in_flight",
    "discard_objects",
    "fail_in_claim",
    "fail_unserved",
    "reap",
    "unavailable_reason",
    "unserved_reason",
]
