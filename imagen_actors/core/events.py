"""Every event in a job's life, as one msgspec tagged union.

Events are facts in the past tense. They travel unchanged over Trio channels, into
``imagen.job_events`` (common fields as columns, the rest as ``data``) and into JSONL logs.
Old shapes are upcast on read by small pure functions (``UPCASTERS``); stored rows are
never rewritten.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, get_args

import msgspec

from imagen_actors.core.errors import ErrorClass

# Fields stored as columns of imagen.job_events rather than inside its ``data`` jsonb.
ROW_FIELDS: Final = frozenset({"type", "job_id", "occurred_at", "actor", "worker_id"})


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    job_id: uuid.UUID
    occurred_at: datetime
    actor: str
    worker_id: str | None = None
    schema_version: int = 1


class JobSubmitted(Event, frozen=True, kw_only=True):
    owner_user_id: uuid.UUID
    prompt: str
    backend: str
    width: int
    height: int
    style: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    opts: dict[str, Any] | None = None
    max_attempts: int = 3


class GenerateRequested(JobSubmitted, frozen=True, kw_only=True):
    """``imagen-actors generate``'s submission when there is no database: same fields."""


class JobClaimed(Event, frozen=True, kw_only=True):
    attempt: int
    lease_expires_at: datetime


class LeaseExtended(Event, frozen=True, kw_only=True):
    lease_expires_at: datetime


class GenerationStarted(Event, frozen=True, kw_only=True):
    backend: str
    seed: int


class GenerationProgress(Event, frozen=True, kw_only=True):
    """A backend's step k of n: observed in memory, persisted only throttled."""

    step: int
    total: int


class PredictionCreated(Event, frozen=True, kw_only=True):
    """The backend started a paid run of its own for this attempt (a Replicate prediction),
    recorded before waiting on it: a later attempt of the job resumes that run instead of
    paying for a second one (backends/replicate.py). Its time is ``occurred_at``."""

    backend: str
    external_id: str


class Generated(Event, frozen=True, kw_only=True):
    """What a generation produced: the fields GenerationSucceeded and GenerationReused share
    (not itself an event of the union)."""

    backend: str
    model: str
    seed: int
    mime: str
    bytes: int
    sha256: str
    latency_ms: int
    cost_usd_estimate: float = 0.0
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class GenerationSucceeded(Generated, frozen=True, kw_only=True):
    pass


class GenerationReused(Generated, frozen=True, kw_only=True):
    """This attempt uploads the image an earlier attempt generated and kept at ``path``
    (its sha256 checked again), instead of rendering it a second time: the earlier upload
    failed on a storage outage. Restores the generation outcome, so ImageStored is legal."""

    path: str


class GenerationFailed(Event, frozen=True, kw_only=True):
    error: str
    error_class: ErrorClass
    # What imagen.jobs.error shows (core/error_text.shown); None in events written before it
    # existed, whose column showed ``error`` itself.
    shown_error: str | None = None
    # Version 1 carried only ``retryable: bool``; see ``_upcast_generation_failed_v1``.
    schema_version: int = 2


class ImageStored(Event, frozen=True, kw_only=True):
    image_id: uuid.UUID
    bucket: str
    storage_path: str
    local_path: str | None = None
    bytes: int
    sha256: str


class JobCompleted(Event, frozen=True, kw_only=True):
    image_id: uuid.UUID
    # A cancel was requested, but only after the image was stored: the job ends done.
    cancel_came_too_late: bool = False


class JobFailed(Event, frozen=True, kw_only=True):
    error: str
    error_class: ErrorClass
    # What imagen.jobs.error shows (core/error_text.shown); None in events written before it
    # existed, whose column showed ``error`` itself.
    shown_error: str | None = None


class ImageDiscarded(Event, frozen=True, kw_only=True):
    """A failed job's objects removed from storage (those that were there): an attempt may
    have uploaded before the job failed, e.g. killed between the upload and its completion."""

    bucket: str
    storage_paths: tuple[str, ...]


class JobRequeued(Event, frozen=True, kw_only=True):
    reason: str
    error: str | None = None
    # What imagen.jobs.error shows (core/error_text.shown); None in events written before it
    # existed, whose column showed ``error`` itself.
    shown_error: str | None = None
    # Not claimable before this instant (backoff after a transient failure).
    retry_at: datetime | None = None
    # True when the attempt was interrupted by the operator (shutdown) or by a dependency
    # or configuration fault, not by the job.
    refund_attempt: bool = False
    # The generated image, kept on this host for the retry's upload (a storage outage).
    kept_image: str | None = None
    # "dependency" or "configuration" when an outage refunded the attempt.
    fault: str | None = None


class JobCancelRequested(Event, frozen=True, kw_only=True):
    reason: str = "cancel requested"


class JobCancelled(Event, frozen=True, kw_only=True):
    reason: str


class JobRetried(Event, frozen=True, kw_only=True):
    """A failed or cancelled job put back to pending with a fresh attempt budget, in the same
    stream (``imagen.retry_job``): its whole history stays in one place."""

    reason: str = "retried"


class UsageRecorded(Event, frozen=True, kw_only=True):
    usage_id: int
    cost_usd_estimate: float


class UsageFailed(Event, frozen=True, kw_only=True):
    error: str


AnyEvent = (
    JobSubmitted
    | GenerateRequested
    | JobClaimed
    | LeaseExtended
    | GenerationStarted
    | GenerationProgress
    | PredictionCreated
    | GenerationSucceeded
    | GenerationReused
    | GenerationFailed
    | ImageStored
    | JobCompleted
    | JobFailed
    | ImageDiscarded
    | JobRequeued
    | JobCancelRequested
    | JobCancelled
    | JobRetried
    | UsageRecorded
    | UsageFailed
)

# Every member of the union by its tag: what ``from_row`` rebuilds a stored row as.
EVENT_TYPES: Final[dict[str, type[Event]]] = {cls.__name__: cls for cls in get_args(AnyEvent)}

ENCODER: Final = msgspec.json.Encoder()
DECODER: Final = msgspec.json.Decoder(AnyEvent)


class UnknownEventError(ValueError):
    """A stored event whose type this version of the code does not know."""


# ---- upcasting: (type, stored schema_version) -> function lifting the data one version


def _upcast_generation_failed_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 said only whether the failure was retryable; v2 names the error class."""
    lifted = {k: v for k, v in data.items() if k != "retryable"}
    lifted["error_class"] = "transient" if data.get("retryable", False) else "permanent"
    lifted["schema_version"] = 2
    return lifted


UPCASTERS: Final[Mapping[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    ("GenerationFailed", 1): _upcast_generation_failed_v1,
}


def upcast(type_name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Lift stored event data to the current shape, one version at a time."""
    while True:
        step = UPCASTERS.get((type_name, int(data.get("schema_version", 1))))
        if step is None:
            return data
        data = step(data)


def event_data(event: Event) -> dict[str, Any]:
    """The ``data`` jsonb of an event row: every field that is not its own column."""
    as_builtins: dict[str, Any] = msgspec.to_builtins(event)
    return {k: v for k, v in as_builtins.items() if k not in ROW_FIELDS}


def from_row(
    type_name: str,
    data: Mapping[str, Any],
    *,
    job_id: uuid.UUID,
    occurred_at: datetime,
    actor: str,
    worker_id: str | None,
) -> AnyEvent:
    """Rebuild an event from a job_events row (columns + data), upcasting old shapes."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise UnknownEventError(
            f"unknown event type {type_name!r} for job {job_id}; "
            "upgrade imagen-actors to a version that knows it"
        )
    fields = upcast(type_name, dict(data))
    fields.update(job_id=job_id, occurred_at=occurred_at, actor=actor, worker_id=worker_id)
    result: AnyEvent = msgspec.convert(fields, cls, strict=False)  # type: ignore[assignment]
    return result


def encode(event: Event) -> bytes:
    return ENCODER.encode(event)


def decode(raw: bytes | str) -> AnyEvent:
    """Decode one JSON-encoded event (a JSONL line), upcasting if it is an old shape."""
    as_dict = msgspec.json.decode(raw)
    if not isinstance(as_dict, dict) or "type" not in as_dict:
        raise msgspec.ValidationError("an event must be a JSON object with a 'type' field")
    type_name = str(as_dict["type"])
    lifted = upcast(type_name, {k: v for k, v in as_dict.items() if k != "type"})
    lifted["type"] = type_name
    decoded: AnyEvent = DECODER.decode(msgspec.json.encode(lifted))
    return decoded
