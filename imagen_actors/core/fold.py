"""The pure state machine of a job: ``fold(state, event) -> state``.

Used live (inside each transition, before the projection row is written) and by replay.
Replaying a job's events must reproduce its ``imagen.jobs`` row exactly, so every
projected column is derived here and nowhere else.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final, Literal

import attrs
import msgspec

from imagen_actors.core import events as ev

Status = Literal["pending", "running", "done", "failed", "cancelled"]

# Columns of imagen.jobs that the fold owns; replay --verify compares exactly these.
PROJECTED_COLUMNS: Final = (
    "id",
    "owner_user_id",
    "prompt",
    "backend",
    "width",
    "height",
    "style",
    "negative_prompt",
    "seed",
    "steps",
    "opts",
    "status",
    "image_id",
    "error",
    "attempts",
    "max_attempts",
    "worker_id",
    "lease_expires_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "version",
    "run_after",
    "progress_step",
    "progress_total",
)


class IllegalTransitionError(Exception):
    """An event that cannot happen to a job in its current state."""

    def __init__(self, state: JobState | None, event: ev.Event, why: str) -> None:
        status = state.status if state is not None else "nonexistent"
        super().__init__(
            f"{type(event).__name__} is not allowed for job {event.job_id} in state {status}: {why}"
        )
        self.state = state
        self.event = event


@attrs.frozen(kw_only=True)
class GenerationOutcome:
    """What the backend produced: the Executor hands it to ``decisions.generation_succeeded``,
    and the fold keeps it in memory state (not projected to jobs)."""

    backend: str
    model: str
    seed: int
    mime: str
    bytes: int
    sha256: str
    latency_ms: int
    cost_usd_estimate: float = 0.0
    metadata: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ExternalRun:
    """The job's latest run on a backend's own service (PredictionCreated): kept across
    requeues so the next attempt can resume it; a retry_job forgets it."""

    backend: str
    id: str
    created_at: datetime


class JobState(msgspec.Struct, frozen=True, kw_only=True):
    """A job as its events fold: the imagen.jobs row (``projection``) plus what the worker
    needs while it is in flight. A msgspec Struct rather than attrs: every event makes a new
    one (``msgspec.structs.replace``, in C), and that copy was most of a replay's time."""

    id: uuid.UUID
    owner_user_id: uuid.UUID
    prompt: str
    backend: str
    width: int
    height: int
    style: str | None
    negative_prompt: str | None
    seed: int | None
    steps: int | None
    opts: dict[str, Any] | None
    status: Status
    image_id: uuid.UUID | None
    error: str | None
    attempts: int
    max_attempts: int
    worker_id: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    version: int
    run_after: datetime | None = None
    # The backend's step k of n in the running attempt (throttled GenerationProgress).
    progress_step: int | None = None
    progress_total: int | None = None
    # Not projected: facts the worker needs while the job is in flight.
    generation: GenerationOutcome | None = None
    prediction: ExternalRun | None = None
    cancel_requested: bool = False
    cancel_reason: str | None = None
    usage_recorded: bool = False
    objects_discarded: bool = False
    outage_refunds: int = 0  # attempts refunded for a dependency or configuration fault

    def projection(self) -> dict[str, Any]:
        """The imagen.jobs row this state stands for."""
        return {name: getattr(self, name) for name in PROJECTED_COLUMNS}


def _illegal(state: JobState | None, event: ev.Event, why: str) -> IllegalTransitionError:
    return IllegalTransitionError(state, event, why)


def _require(state: JobState | None, event: ev.Event, *allowed: Status) -> JobState:
    if state is None:
        raise _illegal(state, event, "the job has no JobSubmitted event")
    if state.status not in allowed:
        raise _illegal(state, event, f"allowed only when {' or '.join(allowed)}")
    return state


def _require_holder(state: JobState, event: ev.Event) -> None:
    if event.worker_id != state.worker_id:
        raise _illegal(
            state, event, f"the lease is held by {state.worker_id!r}, not {event.worker_id!r}"
        )


def fold(state: JobState | None, event: ev.Event) -> JobState:
    """Apply one event. Raises IllegalTransitionError for an event that cannot happen."""
    if state is not None and event.job_id != state.id:
        raise _illegal(state, event, f"the event belongs to job {event.job_id}")
    at = event.occurred_at
    match event:
        case ev.JobSubmitted():
            if state is not None:
                raise _illegal(state, event, "the job was already submitted")
            return JobState(
                id=event.job_id,
                owner_user_id=event.owner_user_id,
                prompt=event.prompt,
                backend=event.backend,
                width=event.width,
                height=event.height,
                style=event.style,
                negative_prompt=event.negative_prompt,
                seed=event.seed,
                steps=event.steps,
                opts=event.opts,
                status="pending",
                image_id=None,
                error=None,
                attempts=0,
                max_attempts=event.max_attempts,
                worker_id=None,
                lease_expires_at=None,
                created_at=at,
                updated_at=at,
                started_at=None,
                finished_at=None,
                version=1,
            )
        case ev.JobClaimed():
            s = _require(state, event, "pending")
            if event.attempt != s.attempts + 1:
                raise _illegal(s, event, f"attempt {event.attempt} after {s.attempts}")
            if event.attempt > s.max_attempts:
                raise _illegal(s, event, f"max_attempts {s.max_attempts} already used")
            if event.worker_id is None:
                raise _illegal(s, event, "a claim needs a worker_id")
            return _step(
                s,
                at,
                status="running",
                attempts=event.attempt,
                worker_id=event.worker_id,
                lease_expires_at=event.lease_expires_at,
                started_at=at,
                run_after=None,
                generation=None,
                progress_step=None,
                progress_total=None,
            )
        case ev.LeaseExtended():
            s = _require(state, event, "running")
            _require_holder(s, event)
            return _step(s, at, lease_expires_at=event.lease_expires_at)
        case ev.GenerationStarted():
            s = _require(state, event, "running")
            _require_holder(s, event)
            return _step(s, at)
        case ev.GenerationProgress():
            s = _require(state, event, "running")
            return _step(s, at, progress_step=event.step, progress_total=event.total)
        case ev.PredictionCreated():
            s = _require(state, event, "running")
            _require_holder(s, event)
            run = ExternalRun(backend=event.backend, id=event.external_id, created_at=at)
            return _step(s, at, prediction=run)
        case ev.GenerationSucceeded() | ev.GenerationReused():
            s = _require(state, event, "running")
            _require_holder(s, event)
            outcome = GenerationOutcome(
                backend=event.backend,
                model=event.model,
                seed=event.seed,
                mime=event.mime,
                bytes=event.bytes,
                sha256=event.sha256,
                latency_ms=event.latency_ms,
                cost_usd_estimate=event.cost_usd_estimate,
                metadata=event.metadata,
            )
            return _step(s, at, generation=outcome)
        case ev.GenerationFailed():
            s = _require(state, event, "running")
            _require_holder(s, event)
            return _step(s, at, error=_shown(event.error, event.shown_error))
        case ev.ImageStored():
            s = _require(state, event, "running")
            _require_holder(s, event)
            if s.generation is None:
                raise _illegal(s, event, "no GenerationSucceeded in this attempt")
            return _step(s, at, image_id=event.image_id)
        case ev.JobCompleted():
            s = _require(state, event, "running")
            _require_holder(s, event)
            if s.image_id is None or s.image_id != event.image_id:
                raise _illegal(s, event, "completion must name the stored image")
            return _step(s, at, status="done", error=None, lease_expires_at=None, finished_at=at)
        case ev.JobFailed():
            s = _require(state, event, "pending", "running")
            return _step(
                s,
                at,
                status="failed",
                error=_shown(event.error, event.shown_error),
                lease_expires_at=None,
                finished_at=at,
            )
        case ev.ImageDiscarded():
            s = _require(state, event, "failed", "cancelled")
            if s.objects_discarded:
                raise _illegal(s, event, "the job's objects were already discarded")
            return _step(s, at, objects_discarded=True)
        case ev.JobRequeued():
            s = _require(state, event, "running")
            if s.attempts >= s.max_attempts and not event.refund_attempt:
                raise _illegal(s, event, f"all {s.max_attempts} attempts are used")
            return _step(
                s,
                at,
                status="pending",
                attempts=s.attempts - 1 if event.refund_attempt else s.attempts,
                worker_id=None,
                lease_expires_at=None,
                image_id=None,
                error=s.error if event.error is None else _shown(event.error, event.shown_error),
                run_after=event.retry_at,
                generation=None,
                outage_refunds=s.outage_refunds + (event.fault is not None),
            )
        case ev.JobCancelRequested():
            s = _require(state, event, "pending", "running")
            return _step(s, at, cancel_requested=True, cancel_reason=event.reason)
        case ev.JobCancelled():
            s = _require(state, event, "pending", "running")
            return _step(
                s,
                at,
                status="cancelled",
                error=event.reason,
                lease_expires_at=None,
                finished_at=at,
            )
        case ev.JobRetried():
            s = _require(state, event, "failed", "cancelled")
            return _step(
                s,
                at,
                status="pending",
                attempts=0,
                image_id=None,
                error=None,
                worker_id=None,
                lease_expires_at=None,
                started_at=None,
                finished_at=None,
                run_after=None,
                progress_step=None,
                progress_total=None,
                generation=None,
                prediction=None,
                cancel_requested=False,
                cancel_reason=None,
                usage_recorded=False,
                objects_discarded=False,
            )
        case ev.UsageRecorded() | ev.UsageFailed():
            s = _require(state, event, "running", "done", "failed", "cancelled")
            if s.usage_recorded:
                raise _illegal(s, event, "usage was already recorded for this job")
            return _step(s, at, usage_recorded=True)
    raise _illegal(state, event, "unknown event type")


def _shown(error: str, shown_error: str | None) -> str:
    """The projected error: the event's shown form, or the full text in older events."""
    return error if shown_error is None else shown_error


def _step(state: JobState, at: datetime, **changes: Any) -> JobState:
    return msgspec.structs.replace(state, updated_at=at, version=state.version + 1, **changes)


def replay(events: Iterable[ev.Event], *, onto: JobState | None = None) -> JobState:
    """Fold a stream in order: a whole one from nothing, or new events ``onto`` a state.

    The one loop over events: replay, ``--verify`` and every transition use it. Raises
    ValueError when that leaves no job (an empty stream from nothing).
    """
    state = onto
    for event in events:
        state = fold(state, event)
    if state is None:
        raise ValueError("cannot replay an empty event stream")
    return state
