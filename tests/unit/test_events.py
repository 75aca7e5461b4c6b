from __future__ import annotations

import types
import typing
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagen_actors.core import events as ev

NOW = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
JOB = uuid.UUID("33333333-3333-4333-8333-333333333333")


# ---- strategies: any valid instance of an event type, built from its field types ----------

_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_JSON_SCALAR = (
    st.none()
    | st.booleans()
    | _INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
# What a jsonb column (opts, metadata) can hold.
_JSON = st.recursive(
    _JSON_SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
# Events are stamped with aware datetimes (an ISO string with an offset in JSON and jsonb).
_WHEN = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]))


def value_of(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for one field type of an event."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return _JSON
    if origin in (types.UnionType, typing.Union):
        return st.one_of([value_of(arg) for arg in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(value_of(args[0]), max_size=3).map(tuple)
    if origin is dict:
        return st.dictionaries(value_of(args[0]), value_of(args[1]), max_size=3)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(),
        bool: st.booleans(),
        int: _INT64,
        float: st.floats(allow_nan=False, allow_infinity=False),
        str: st.text(),
        uuid.UUID: st.uuids(),
        datetime: _WHEN,
    }
    assert tp in simple, f"no strategy for field type {tp!r}: add one to value_of"
    return simple[tp]


def events_of(cls: type[ev.Event]) -> st.SearchStrategy[ev.Event]:
    """Any instance of ``cls``: every field drawn from its type, except schema_version, which is
    the class's current version (an older one is upcast on read, a different event by design)."""
    fields: dict[str, st.SearchStrategy[Any]] = {
        f.name: st.just(f.default) if f.name == "schema_version" else value_of(f.type)
        for f in msgspec.structs.fields(cls)
    }
    return st.builds(cls, **fields)


ALL_EVENT_TYPES: list[type[ev.Event]] = list(typing.get_args(ev.AnyEvent))


def test_the_union_is_what_the_round_trips_cover() -> None:
    """The parametrization below is over the AnyEvent union, which is what decode accepts."""
    assert len(ALL_EVENT_TYPES) == len(ev.EVENT_TYPES) == 20
    assert {cls.__name__ for cls in ALL_EVENT_TYPES} == set(ev.EVENT_TYPES)


@pytest.mark.parametrize("cls", ALL_EVENT_TYPES, ids=lambda cls: cls.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_event_round_trips_through_json(cls: type[ev.Event], data: st.DataObject) -> None:
    """encode -> decode gives an equal struct of the same type, through the shared union."""
    event = data.draw(events_of(cls))
    back = ev.decode(ev.encode(event))
    assert type(back) is cls
    assert back == event


@pytest.mark.parametrize("cls", ALL_EVENT_TYPES, ids=lambda cls: cls.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_event_round_trips_through_its_row(cls: type[ev.Event], data: st.DataObject) -> None:
    """event_data -> jsonb (JSON text) -> from_row with the column fields gives it back."""
    event = data.draw(events_of(cls))
    stored = msgspec.json.decode(msgspec.json.encode(ev.event_data(event)))
    assert not ev.ROW_FIELDS & set(stored)
    back = ev.from_row(
        type(event).__name__,
        stored,
        job_id=event.job_id,
        occurred_at=event.occurred_at,
        actor=event.actor,
        worker_id=event.worker_id,
    )
    assert type(back) is cls
    assert back == event


def test_all_event_types_are_in_the_union() -> None:
    """The union names every event of the job's life, plus generate's GenerateRequested."""
    assert set(ev.EVENT_TYPES) == {
        "JobSubmitted",
        "GenerateRequested",
        "JobClaimed",
        "GenerationStarted",
        "GenerationProgress",
        "PredictionCreated",
        "GenerationSucceeded",
        "GenerationReused",
        "GenerationFailed",
        "ImageStored",
        "JobCompleted",
        "JobFailed",
        "ImageDiscarded",
        "JobRequeued",
        "LeaseExtended",
        "JobCancelRequested",
        "JobCancelled",
        "JobRetried",
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
    assert data == {"schema_version": 1, "image_id": str(JOB), "cancel_came_too_late": False}
    back = ev.from_row(
        "JobCompleted", data, job_id=JOB, occurred_at=NOW, actor="uploader", worker_id="w"
    )
    assert back == e
    # A JobCompleted stored before the field existed reads as not too late.
    old = ev.from_row(
        "JobCompleted",
        {"schema_version": 1, "image_id": str(JOB)},
        job_id=JOB,
        occurred_at=NOW,
        actor="uploader",
        worker_id="w",
    )
    assert old == e


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
