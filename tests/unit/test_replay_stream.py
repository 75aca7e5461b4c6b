"""replay --verify's stream reading (cli/replay_stream.py) decodes each event exactly as the
gateway's ``event_from_record`` does, refuses what it refuses with its words, and checks
seq and hash chain as core/chain does, without a database: rows are built the way
``replay_page`` prints them (data rendered by ``chain.jsonb_text``, jsonb's output)."""

from __future__ import annotations

import types
import typing
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec import Raw

from imagen_actors.cli import replay_stream
from imagen_actors.core import chain
from imagen_actors.core import events as ev
from imagen_actors.db.transactions import PoisonedStreamError, decode_json, event_from_record
from tests.support import events as support

JOB = uuid.UUID("55555555-5555-4555-8555-555555555555")
T0 = datetime(2026, 11, 23, 12, 0, 0, 250_000, tzinfo=UTC)

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
# Values a lax decoder might take for another type: numbers in strings, "2.0", big ints.
_AWKWARD = st.sampled_from(["1", "2.0", "1e0", " 2", "true", "", "x", 2.0, 1.5, 2**64, -1, []])


def _good(tp: Any) -> st.SearchStrategy[Any]:
    """A JSON value that field type ``tp`` accepts (as stored data carries it)."""
    args = typing.get_args(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_good(a) for a in args))
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is dict:
        return st.dictionaries(_TEXT, _JSON, max_size=3)
    if origin is tuple:
        return st.lists(_TEXT, max_size=3)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(),
        bool: st.booleans(),
        int: st.integers(min_value=0, max_value=2**53),
        float: st.floats(allow_nan=False, allow_infinity=False),
        str: _TEXT,
        uuid.UUID: st.uuids().map(str),
        datetime: st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    }
    return simple.get(tp, _JSON)


@st.composite
def _event_data(draw: st.DrawFn) -> tuple[str, Any]:
    """An event type (known or not) and data: its fields, some dropped, some replaced by a
    value of another type, and keys it does not have (columns and the tag among them)."""
    type_name = draw(st.sampled_from([*ev.EVENT_TYPES, "JobTeleported"]))
    cls = ev.EVENT_TYPES.get(type_name, ev.JobCancelled)
    data: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        if field.name in ev.ROW_FIELDS or draw(st.integers(0, 9)) == 0:
            continue
        data[field.name] = draw(_AWKWARD if draw(st.integers(0, 7)) == 0 else _good(field.type))
    extra = ["job_id", "occurred_at", "actor", "worker_id", "type", "schema_version", "zz"]
    for key in draw(st.lists(st.sampled_from(extra), max_size=2, unique=True)):
        data[key] = draw(_AWKWARD | _JSON | st.just(type_name))
    shape = draw(st.integers(0, 19))
    return type_name, data if shape else draw(_JSON)


def _row(seq: int, type_name: str, data_text: str, *, prev: bytes | None) -> Any:
    actor, worker = "executor", f"vm:{seq}"
    us = chain.micros(T0) + seq
    link = chain.link(prev, JOB, seq, type_name, actor, worker, us, None, data_text=data_text)
    at = chain.from_micros(us).replace(tzinfo=None).isoformat()
    return replay_stream.StreamEvent(
        seq, type_name, Raw(chain.quoted(actor)), Raw(chain.quoted(worker)), us,
        Raw(data_text), link, Raw(f'"{at}"'),
    )  # fmt: skip


def _gateway(e: Any) -> ev.Event | str:
    """What event_from_record makes of the row: its event, or why it refuses it."""
    record = {
        "seq": e.seq,
        "type": e.type_name,
        "data": decode_json(bytes(e.data).decode()),
        "occurred_at": chain.from_micros(e.occurred_at_us),
        "actor": "executor",
        "worker_id": f"vm:{e.seq}",
    }
    try:
        return event_from_record(JOB, record)
    except PoisonedStreamError as exc:
        return exc.why


@settings(max_examples=400, deadline=None)
@given(_event_data())
def test_each_event_decodes_as_the_gateway_decodes_it(case: tuple[str, Any]) -> None:
    """Whatever the data, the event is the gateway's, or refused with the gateway's reason."""
    type_name, data = case
    row = _row(1, type_name, chain.jsonb_text(data), prev=None)
    events, problems = replay_stream.check(JOB, [row])
    expected = _gateway(row)
    if isinstance(expected, str):
        assert (events, problems) == ([], [f"event 1 ({type_name}) is undecodable: {expected}"])
    else:
        assert (events, problems) == ([expected], [])
        assert type(events[0]) is type(expected)
        assert events[0].occurred_at.tzinfo is UTC


@pytest.mark.parametrize(
    "extra",
    [
        "9" * 310 + ".5",  # beyond a double's range: msgspec's untyped decode refuses it
        "7" * 5000,  # beyond int()'s 4,300 digits
        "[" * 600 + "]" * 600,  # near the recursion limit
        '"2.0"',  # not every version int() reads
    ],
    ids=["huge-float", "huge-int", "deep", "string-version"],
)
def test_what_the_gateway_refuses_in_a_field_the_event_lacks_is_refused(extra: str) -> None:
    """The typed decoder skips unknown keys unread; the gateway decodes them first."""
    key = "schema_version" if extra.startswith('"') else "unknown"
    row = _row(1, "JobCancelled", f'{{"{key}": {extra}, "reason": "x"}}', prev=None)
    expected = _gateway(row)
    events, problems = replay_stream.check(JOB, [row])
    if isinstance(expected, str):
        assert (events, problems) == ([], [f"event 1 (JobCancelled) is undecodable: {expected}"])
    else:
        assert (events, problems) == ([expected], [])


def test_a_real_stream_decodes_and_chains() -> None:
    """The worker's own events, stored and read back: decoded as they were, the chain whole."""
    written = [
        support.submitted(JOB, T0),
        ev.JobClaimed(job_id=JOB, occurred_at=T0, actor="claimer", worker_id="vm:1", attempt=1,
                      lease_expires_at=T0 + timedelta(seconds=60)),
        ev.GenerationFailed(job_id=JOB, occurred_at=T0, actor="executor", worker_id="vm:1",
                            error="boom", error_class="transient"),
        ev.JobRequeued(job_id=JOB, occurred_at=T0, actor="executor", reason="retry"),
    ]  # fmt: skip
    rows: list[Any] = []
    prev = None
    for seq, event in enumerate(written, start=1):
        data = chain.jsonb_text(msgspec.to_builtins(ev.event_data(event)))
        at = chain.micros(event.occurred_at)
        link = chain.link(
            prev, JOB, seq, type(event).__name__, event.actor, event.worker_id, at, None,
            data_text=data,
        )  # fmt: skip
        rows.append(
            replay_stream.StreamEvent(
                seq,
                type(event).__name__,
                Raw(chain.quoted(event.actor)),
                Raw(chain.quoted(event.worker_id)),
                at,
                Raw(data),
                link,
                Raw('"' + event.occurred_at.replace(tzinfo=None).isoformat() + '"'),
            )
        )
        prev = link
    assert replay_stream.check(JOB, rows) == (written, [])
    text = msgspec.json.encode(rows).decode()
    assert replay_stream.read(text) == rows


def test_gaps_broken_links_and_unknown_types_are_each_reported() -> None:
    """A missing seq, a changed event and an unknown type: three problems, no exception."""
    first = _row(1, "JobCancelRequested", '{"reason": "x"}', prev=None)
    changed = msgspec.structs.replace(
        _row(3, "JobCancelled", '{"reason": "y"}', prev=first.hash), data=Raw('{"reason": "z"}')
    )
    unknown = _row(4, "JobTeleported", "{}", prev=changed.hash)
    events, problems = replay_stream.check(JOB, [first, changed, unknown])
    assert [type(e).__name__ for e in events] == ["JobCancelRequested", "JobCancelled"]
    assert problems[0] == "seq jumps from 1 to 3: event(s) are missing from the log"
    assert problems[1].startswith("event 3 (JobCancelled): its hash does not chain")
    assert problems[2].startswith("event 4 (JobTeleported) is undecodable: unknown event type")
    assert len(problems) == 3


def test_a_stream_nested_too_deep_to_decode_whole_is_refused_by_name() -> None:
    """The one text a job's events come in cannot be decoded: read says so, for a re-read."""
    deep = "[" * 5000 + "]" * 5000
    text = f'[[1, "JobSubmitted", "database", null, 0, {{"opts": {deep}}}, "", "2026-01-01"]]'
    try:
        replay_stream.read(text)
    except replay_stream.StreamUnreadableError as exc:
        assert "RecursionError" in str(exc)
    else:
        raise AssertionError("a stream nested 5,000 deep decoded")
