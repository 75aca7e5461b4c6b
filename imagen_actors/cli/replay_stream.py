"""One job's stream as ``replay_page`` / ``replay_jobs`` return it (one JSON text), checked
and decoded for ``replay --verify``: seq continuity and the hash chain (core/chain), and each
event rebuilt as the gateway rebuilds it (``transactions.event_from_record``), an event that
cannot be one reported without stopping the check.

The text is decoded by one msgspec call per job into ``StreamEvent`` structs whose data is
the exact text jsonb printed (``msgspec.Raw``). An event whose data is a plain JSON object
is then decoded straight into its class by msgspec, the row's columns appended to its data
as JSON (a later key wins, as the columns win in ``events.from_row``): the same lax
conversion ``from_row`` asks of ``msgspec.convert``, without a dict per event. Every other
event (a type with an upcaster, data that is not such an object, or that msgspec refuses)
goes through ``event_from_record`` itself, so what it accepts and what it reports are the
gateway's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC
from typing import Any, Final

import msgspec
from msgspec import Raw

from imagen_actors.core import chain
from imagen_actors.core import events as ev
from imagen_actors.db.transactions import (
    PoisonedStreamError,
    UndecodableJson,
    decode_json,
    event_from_record,
)


class StreamEvent(chain.RawLink, array_like=True, frozen=True):
    """One element of a ``stream``: the link's pieces, then occurred_at in UTC as JSON text
    without its offset (``"2026-02-03T04:05:06.789012"``)."""

    at: Raw


_STREAM: Final = msgspec.json.Decoder(list[StreamEvent])

# The event types ``events.from_row`` builds without upcasting: their data, plus the row's
# columns, is exactly what msgspec.convert is given. The lax (strict=False) decoding is
# the same conversion ``from_row`` asks for.
_DECODERS: Final = {
    name: msgspec.json.Decoder(cls, strict=False)
    for name, cls in ev.EVENT_TYPES.items()
    if all(name != upcast_type for upcast_type, _ in ev.UPCASTERS)
}

_COLUMNS: Final = b'%b, "job_id": %b, "occurred_at": %bZ", "actor": %b, "worker_id": %b}'
_COLUMNS_ONLY: Final = b'{"job_id": %b, "occurred_at": %bZ", "actor": %b, "worker_id": %b}'

# Data this short cannot hold what msgspec's untyped decode (``decode_json``, the gateway's
# codec) refuses but its typed decode skips in a field the event does not have: a number
# beyond a float's range (jsonb prints numbers without exponents, so that is 309 digits, a
# point and a digit, in an object: 317 bytes), an integer over 4,300 digits, or nesting
# near the recursion limit. Longer data is decoded once untyped to be sure.
_SHORT: Final = 316
# A string schema_version: ``events.upcast`` reads it with int(), which refuses "2.0" where
# msgspec's lax int accepts it. Inside a JSON string a quote is escaped, so this sequence
# only ever starts a key's value.
_STRING_VERSION: Final = b'"schema_version": "'


class StreamUnreadableError(ValueError):
    """A stream text msgspec cannot decode whole (data nested beyond its recursion limit):
    read that job's events one row each instead (``replay_events_for``, ``from_columns``)."""


def read(text: str | None) -> list[StreamEvent]:
    """The events of one ``stream`` column, in seq order (none for NULL)."""
    if text is None:
        return []
    try:
        return _STREAM.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise StreamUnreadableError(f"{type(exc).__name__}: {exc}") from None


def from_columns(row: Mapping[str, Any]) -> StreamEvent:
    """One ``replay_events_for`` row as the ``StreamEvent`` its stream would have held."""
    at = row["occurred_at"].astimezone(UTC).replace(tzinfo=None).isoformat()
    return StreamEvent(
        row["seq"], row["type"], Raw(chain.quoted(row["actor"])),
        Raw(chain.quoted(row["worker_id"])), row["us"], Raw(row["data_text"]), row["hash"],
        Raw(f'"{at}"'),
    )  # fmt: skip


def check(job_id: uuid.UUID, stream: list[StreamEvent]) -> tuple[list[ev.Event], list[str]]:
    """Decode ``stream``, noting every event that breaks the log's rules: a seq that is not
    the next one, a hash that does not chain (the link recomputed over the row as stored),
    an event this version cannot read (unknown type, data the decoder refuses). Never raises
    for a bad row."""
    problems = chain.raw_problems(job_id, stream)
    job_quoted = chain.quoted(str(job_id))
    events: list[ev.Event] = []
    append = events.append
    decoders = _DECODERS
    for e in stream:
        decoder = decoders.get(e.type_name)
        if decoder is not None:
            data = bytes(e.data)
            body = None
            if len(data) == 2:
                if data == b"{}":
                    body = _COLUMNS_ONLY % (job_quoted, memoryview(e.at)[:-1], e.actor, e.worker_id)
            elif (
                data[0] == 123  # "{": an object; any other value is not one after splicing
                and (len(data) <= _SHORT or _untyped_reads(data))
                and _STRING_VERSION not in data
            ):
                body = _COLUMNS % (
                    data[:-1],
                    job_quoted,
                    memoryview(e.at)[:-1],
                    e.actor,
                    e.worker_id,
                )
            if body is not None:
                try:
                    append(decoder.decode(body))
                    continue
                except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                    pass  # event_from_record decides, and words the reason
        try:
            append(event_from_record(job_id, _record(e)))
        except PoisonedStreamError as exc:
            problems.append(f"event {e.seq} ({e.type_name}) is undecodable: {exc.why}")
    return events, problems


def _untyped_reads(data: bytes) -> bool:
    return not isinstance(decode_json(data.decode("utf-8")), UndecodableJson)


def _record(e: StreamEvent) -> dict[str, Any]:
    """The row ``event_from_record`` reads, as the gateway's own query returns it."""
    return {
        "seq": e.seq,
        "type": e.type_name,
        "data": decode_json(bytes(e.data).decode("utf-8")),
        "occurred_at": chain.from_micros(e.occurred_at_us),
        "actor": msgspec.json.decode(e.actor),
        "worker_id": msgspec.json.decode(e.worker_id),
    }
