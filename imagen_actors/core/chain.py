"""The event hash chain of schema 0009, in Python, for logs that have left the database.

``imagen.job_event_hash`` is the definition; this is the same function for a stream read
from an archive file (``replay --log``), where no server is at hand to compute it:

    hash = sha256(previous hash (nothing for seq 1) || utf8(canonical))
    canonical = jsonb_build_array(job_id, seq, type, actor, worker_id,
                                  occurred_at as integer microseconds, data)::text

``jsonb_text`` renders a JSON value as Postgres's jsonb output does: object keys ordered by
byte length, then bytewise (jsonb's storage order); ``", "`` and ``": "`` separators; strings
escaped as ``escape_json`` does; numbers as ``numeric_out`` prints them (so a value must be
parsed with ``parse_float=Decimal`` to keep ``1.50`` as ``1.50``). tests/integration/
test_archive_chain.py checks it against the server on real rows and on awkward values.

``replay --verify`` gets every piece already printed by the server (``RawLink``: strings
as JSON, data as jsonb_out prints it) and assembles each link's input with one bytes
template; an archive's events are rendered into the same pieces (``StoredLink.raw``).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import attrs
import msgspec
from msgspec import Raw

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# What escape_json escapes; a string without any is printed as it is, between quotes (the
# usual case, and a verify hashes several strings per event).
_ESCAPED: Final = re.compile(r'["\\\x00-\x1f]')


def _string(value: str) -> str:
    if _ESCAPED.search(value) is None:
        return f'"{value}"'
    # json.dumps without ASCII escaping escapes exactly what escape_json does: '"', '\',
    # \b \f \n \r \t, and other characters below U+0020 as lower-case \u00xx.
    return json.dumps(value, ensure_ascii=False)


def _number(value: int | float | Decimal) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # A float has lost its digits already; repr's shortest form is what jsonb keeps of
        # the text Python would send.
        value = Decimal(repr(value))
    if not value.is_finite():
        raise ValueError(f"{value} is not a JSON number")
    # numeric has no negative zero; 'f' keeps the scale (1.50 stays 1.50, 1e3 is 1000).
    return format(value.copy_abs() if value.is_zero() else value, "f")


def _key_order(key: str) -> tuple[int, bytes]:
    raw = key.encode("utf-8")
    return len(raw), raw


def jsonb_text(value: Any) -> str:
    """``value::jsonb::text`` as Postgres prints it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int | float | Decimal):
        return _number(value)
    if isinstance(value, Mapping):
        items = sorted(((str(k), v) for k, v in value.items()), key=lambda kv: _key_order(kv[0]))
        return "{" + ", ".join(f"{_string(k)}: {jsonb_text(v)}" for k, v in items) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(jsonb_text(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def micros(at: datetime) -> int:
    """Integer microseconds since the Unix epoch (``extract(epoch ...) * 1000000``)."""
    delta = at - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


# The bytes an event's link is computed over: the previous link, then the canonical text
# (``imagen.job_event_canonical``: jsonb_build_array's output, ", " between elements), its
# strings already printed as JSON. One template for every caller, and one C call per event.
_LINK_INPUT: Final = b"%b[%b, %d, %b, %b, %b, %d, %b]"
_SHA256: Final = hashlib.sha256()

# Strings printed as JSON, for the few distinct event types, actors and worker ids a stream
# repeats (bounded: a run adds at most one entry per distinct value it meets).
_QUOTED: dict[str, bytes] = {}
_QUOTED_MAX: Final = 4096


def quoted(value: str | None) -> bytes:
    """``value`` as jsonb prints it (a JSON string, or null), as UTF-8."""
    if value is None:
        return b"null"
    found = _QUOTED.get(value)
    if found is None:
        found = _string(value).encode("utf-8")
        if len(_QUOTED) < _QUOTED_MAX:
            _QUOTED[value] = found
    return found


def canonical(
    job_id: uuid.UUID,
    seq: int,
    type_name: str,
    actor: str,
    worker_id: str | None,
    occurred_at_us: int,
    data: Any,
    *,
    data_text: str | None = None,
) -> str:
    """``imagen.job_event_canonical``: the text an event's link is computed over.
    ``data_text``: ``data`` already rendered as jsonb text (what the database printed),
    used as it is."""
    text = jsonb_text(data) if data_text is None else data_text
    row = RawLink(
        seq, type_name, Raw(quoted(actor)), Raw(quoted(worker_id)), occurred_at_us, Raw(text), None
    )
    return _link_input(b"", quoted(str(job_id)), row).decode("utf-8")


def link(
    prev: bytes | None,
    job_id: uuid.UUID,
    seq: int,
    type_name: str,
    actor: str,
    worker_id: str | None,
    occurred_at_us: int,
    data: Any,
    *,
    data_text: str | None = None,
) -> bytes:
    """``imagen.job_event_hash``: this event's hash, chained to ``prev``."""
    text = canonical(
        job_id, seq, type_name, actor, worker_id, occurred_at_us, data, data_text=data_text
    )
    return hashlib.sha256((prev or b"") + text.encode("utf-8")).digest()


class RawLink(msgspec.Struct, array_like=True, frozen=True):
    """One event as stored, in the pieces its link covers, each as the server prints it in
    JSON: ``[seq, type, actor, worker_id, occurred_at_us, data, hash]`` (``replay_page``'s
    per-event array; the hash in base64, None when unreadable). ``data`` is kept as the
    exact text jsonb printed: the link is computed over it as it is."""

    seq: int
    type_name: str
    actor: Raw
    worker_id: Raw
    occurred_at_us: int
    data: Raw
    hash: bytes | None


def _link_input(prev: bytes, job_quoted: bytes, e: RawLink) -> bytes:
    return _LINK_INPUT % (
        prev, job_quoted, e.seq, quoted(e.type_name), e.actor, e.worker_id, e.occurred_at_us,
        e.data,
    )  # fmt: skip


@attrs.frozen
class StoredLink:
    """One event as stored (a job_events row, an archived event): what its link covers,
    the data as jsonb printed it, and the hash it carries (None when unreadable)."""

    seq: int
    type_name: str
    actor: str
    worker_id: str | None
    occurred_at_us: int
    data_text: str
    hash: bytes | None

    def raw(self) -> RawLink:
        return RawLink(
            self.seq, self.type_name, Raw(quoted(self.actor)), Raw(quoted(self.worker_id)),
            self.occurred_at_us, Raw(self.data_text), self.hash,
        )  # fmt: skip


def problems(job_id: uuid.UUID, stream: Iterable[StoredLink]) -> list[str]:
    """``raw_problems`` for events held as Python values (an archive's)."""
    return raw_problems(job_id, [e.raw() for e in stream])


def raw_problems(job_id: uuid.UUID, stream: Iterable[RawLink]) -> list[str]:
    """What breaks the log's rules in one job's stream, in seq order: a seq that is not the
    next one, a hash that does not link to the event before it. The stored text is hashed
    as it is (it links when nothing changed); text that does not (re-encoded by a tool on
    the way, or changed) is rendered again the way jsonb prints it, numbers exact."""
    found: list[str] = []
    job_quoted = quoted(str(job_id))
    fresh = _SHA256.copy  # cheaper than a new hashlib.sha256() per event
    previous_seq = 0
    previous_hash = b""
    for e in stream:
        seq = e.seq
        if seq != previous_seq + 1:
            found.append(
                f"seq jumps from {previous_seq} to {seq}: event(s) are missing from the log"
            )
        previous_seq = seq
        stored = e.hash
        digest = fresh()
        digest.update(_link_input(previous_hash, job_quoted, e))
        if stored is None or (
            digest.digest() != stored and not _links_exactly(previous_hash, job_id, e)
        ):
            found.append(
                f"event {seq} ({e.type_name}): its hash does not chain to the event before "
                "it (this event was changed, or an event before it was removed or inserted)"
            )
        previous_hash = stored or b""
    return found


def _links_exactly(prev: bytes, job_id: uuid.UUID, e: RawLink) -> bool:
    """Whether the event links once its data is rendered the way jsonb prints it."""
    rendered = jsonb_text(_exact(bytes(e.data).decode("utf-8", "replace")))
    again = msgspec.structs.replace(e, data=Raw(rendered))
    return hashlib.sha256(_link_input(prev, quoted(str(job_id)), again)).digest() == e.hash


def _exact(text: str) -> Any:
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError:
        return text  # not JSON at all: hashed as a string, it cannot link
