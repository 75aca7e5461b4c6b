from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from imagen_actors.core import events as ev

NOW = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
JOB = uuid.UUID("33333333-3333-4333-8333-333333333333")


def test_every_event_round_trips_through_json() -> None:
    """Each event type encodes and decodes to an equal struct through the shared codec."""
    samples: list[ev.Event] = [
        ev.JobSubmitted(
            job_id=JOB,
            occurred_at=NOW,
            actor="database",
            owner_user_id=JOB,
            prompt="owl",
            backend="mock",
            width=64,
            height=64,
            opts={"a": 1},
        ),
        ev.JobClaimed(
            job_id=JOB,
            occurred_at=NOW,
            actor="claimer",
            worker_id="h:w",
            attempt=1,
            lease_expires_at=NOW,
        ),
        ev.GenerationFailed(
            job_id=JOB, occurred_at=NOW, actor="executor", error="boom", error_class="transient"
        ),
        ev.JobRequeued(job_id=JOB, occurred_at=NOW, actor="reaper", reason="x", retry_at=NOW),
    ]
    for event in samples:
        assert ev.decode(ev.encode(event)) == event


def test_all_event_types_are_in_the_union() -> None:
    """The union names every event of the job's life, plus generate's GenerateRequested."""
    assert set(ev.EVENT_TYPES) == {
        "JobSubmitted",
        "GenerateRequested",
        "JobClaimed",
        "GenerationStarted",
        "GenerationProgress",
        "GenerationSucceeded",
        "GenerationFailed",
        "ImageStored",
        "JobCompleted",
        "JobFailed",
        "ImageDiscarded",
        "JobRequeued",
        "LeaseExtended",
        "JobCancelRequested",
        "JobCancelled",
        "UsageRecorded",
        "UsageFailed",
    }


def test_generation_failed_v1_is_upcast_on_read() -> None:
    """A stored v1 GenerationFailed (retryable flag) reads back as v2 with an error class."""
    row_data = {"schema_version": 1, "error": "timeout", "retryable": True}
    event = ev.from_row(
        "GenerationFailed", row_data, job_id=JOB, occurred_at=NOW, actor="executor", worker_id="w"
    )
    assert isinstance(event, ev.GenerationFailed)
    assert event.error_class == "transient"
    assert event.schema_version == 2
    line = (
        b'{"type":"GenerationFailed","job_id":"%s","occurred_at":"2026-11-23T12:00:00Z",'
        b'"actor":"x","error":"bad size","retryable":false}' % str(JOB).encode()
    )
    decoded = ev.decode(line)
    assert isinstance(decoded, ev.GenerationFailed) and decoded.error_class == "permanent"


def test_row_data_excludes_column_fields() -> None:
    """The data jsonb holds only the event's own fields; common ones are columns."""
    e = ev.JobCompleted(job_id=JOB, occurred_at=NOW, actor="uploader", worker_id="w", image_id=JOB)
    data = ev.event_data(e)
    assert data == {"schema_version": 1, "image_id": str(JOB)}
    back = ev.from_row(
        "JobCompleted", data, job_id=JOB, occurred_at=NOW, actor="uploader", worker_id="w"
    )
    assert back == e


def test_unknown_type_is_a_clear_error() -> None:
    """An event type from a newer version says to upgrade."""
    with pytest.raises(ev.UnknownEventError, match="upgrade imagen-actors"):
        ev.from_row("JobTeleported", {}, job_id=JOB, occurred_at=NOW, actor="x", worker_id=None)


def test_events_are_frozen() -> None:
    """Events are immutable facts."""
    e = ev.JobCancelled(job_id=JOB, occurred_at=NOW, actor="x", reason="r")
    with pytest.raises(AttributeError):
        e.reason = "other"  # type: ignore[misc]
    with pytest.raises(msgspec.ValidationError):
        ev.decode(b'{"type":"JobCancelled"}')
