"""The archive file of ``imagen-actors archive``, and its check by ``replay --log``.

A gzip file of JSON lines, written as one gzip member per batch (so what was written and
recorded is a valid file at every batch boundary). Line 1 is the header; every other line is
one job: its ``imagen.jobs`` row, its ``imagen.images`` row (or null) and its events in seq
order, each with ``data`` as jsonb's own text and ``at_us`` (occurred_at in integer
microseconds), the two forms the hash chain of schema 0009 is computed over, and its stored
``hash``. Checking a line recomputes the chain with ``core.chain`` (no database), folds the
events with the one fold and compares the result with the archived row, as ``replay
--verify`` does for a live job. Nothing here touches the database or a file.
"""

from __future__ import annotations

import typing
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec

from imagen_actors.cli.reports import replay as rr
from imagen_actors.core import chain
from imagen_actors.core import events as ev
from imagen_actors.core import fold as fl

FORMAT: Final = "imagen-actors archive"
FORMAT_VERSION: Final = 1
GZIP_MAGIC: Final = b"\x1f\x8b"

# The columns of an archive_page row that are not imagen.jobs columns.
EXTRA_COLUMNS: Final = (
    "archive_image",
    "archive_seqs",
    "archive_types",
    "archive_datas",
    "archive_actors",
    "archive_worker_ids",
    "archive_at_us",
    "archive_hashes",
    "archive_opts",
)


class Header(msgspec.Struct, frozen=True, kw_only=True):
    format: str
    version: int
    archive_id: int
    kind: str
    cutoff: datetime | None
    created_at: datetime


class ArchivedEvent(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    type: str
    actor: str
    worker_id: str | None
    at_us: int
    data: msgspec.Raw
    hash: str


class ArchivedJob(msgspec.Struct, frozen=True, kw_only=True):
    job: dict[str, Any]
    image: dict[str, Any] | None
    events: list[ArchivedEvent]


# The projected columns typed as JobState types them, so an archived row (JSON) compares
# with a replayed state exactly as a live row does; built from the one JobState definition.
_hints = typing.get_type_hints(fl.JobState)
ProjectedRow = msgspec.defstruct(
    "ProjectedRow", [(name, _hints[name]) for name in fl.PROJECTED_COLUMNS], kw_only=True
)


class ArchiveError(ValueError):
    """A file that is not an archive of this format."""


def header_line(header: Header) -> bytes:
    return msgspec.json.encode(header) + b"\n"


def job_line(row: Mapping[str, Any]) -> tuple[bytes, int]:
    """One ``archive_page`` row as its line, and how many events it holds."""
    job = {k: v for k, v in row.items() if k not in EXTRA_COLUMNS}
    # jsonb's own text, not the worker's decoding of it (which gives up on some values).
    opts = row["archive_opts"]
    job["opts"] = None if opts is None else msgspec.Raw(opts.encode())
    events = [
        ArchivedEvent(
            seq=q, type=t, actor=a, worker_id=w, at_us=u, data=msgspec.Raw(d.encode()), hash=h.hex()
        )
        for q, t, d, a, w, u, h in zip(
            row["archive_seqs"] or [],
            row["archive_types"] or [],
            row["archive_datas"] or [],
            row["archive_actors"] or [],
            row["archive_worker_ids"] or [],
            row["archive_at_us"] or [],
            row["archive_hashes"] or [],
            strict=True,
        )
    ]
    line = ArchivedJob(job=job, image=row["archive_image"], events=events)
    return msgspec.json.encode(line) + b"\n", len(events)


def read_header(line: bytes) -> Header:
    try:
        header = msgspec.json.decode(line, type=Header)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ArchiveError(f"line 1 is not an archive header: {exc}") from None
    if header.format != FORMAT:
        raise ArchiveError(f"line 1 names format {header.format!r}, not {FORMAT!r}")
    if header.version != FORMAT_VERSION:
        raise ArchiveError(
            f"archive format version {header.version}; this version reads {FORMAT_VERSION}: "
            "use the imagen-actors release that wrote it"
        )
    return header


def _check_chain(job_id: uuid.UUID, events: Sequence[ArchivedEvent]) -> list[str]:
    """What breaks the chain's rules: seq gaps, hashes that do not link."""
    return chain.problems(
        job_id,
        (
            chain.StoredLink(
                e.seq, e.type, e.actor, e.worker_id, e.at_us, bytes(e.data).decode(), _hash(e.hash)
            )
            for e in events
        ),
    )


def _hash(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _image_problem(image: Mapping[str, Any] | None, stream: Sequence[ev.Event]) -> str | None:
    """Whether the archived image row is the one the stream stored (ImageStored)."""
    stored = [e for e in stream if isinstance(e, ev.ImageStored)]
    final = next((e for e in reversed(stream) if isinstance(e, ev.JobCompleted)), None)
    if image is None:
        return None if final is None else "the job is done but the archive has no image row"
    named = next((e for e in reversed(stored) if str(e.image_id) == image.get("id")), None)
    if named is None:
        return f"image row {image.get('id')} is not one the job's ImageStored events name"
    for column in ("bucket", "storage_path", "sha256"):
        if image.get(column) != getattr(named, column):
            return f"image row {column} {image.get(column)!r} differs from ImageStored's"
    return None


def verify_line(line: bytes, number: int) -> rr.VerifyResult:
    """Check one job line: chain, fold, projection and image row."""
    try:
        archived = msgspec.json.decode(line, type=ArchivedJob)
        row = msgspec.convert(archived.job, ProjectedRow)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ArchiveError(f"line {number} is not an archived job: {exc}") from None
    job_id: uuid.UUID = row.id  # type: ignore[attr-defined]
    problems = _check_chain(job_id, archived.events)
    stream: list[ev.AnyEvent] = []
    for e in archived.events:
        try:
            stream.append(
                ev.from_row(
                    e.type,
                    msgspec.json.decode(bytes(e.data)),
                    job_id=job_id,
                    occurred_at=chain.from_micros(e.at_us),
                    actor=e.actor,
                    worker_id=e.worker_id,
                )
            )
        except (ValueError, TypeError, msgspec.ValidationError) as exc:
            problems.append(f"event {e.seq} ({e.type}) is undecodable: {str(exc)[:300]}")
    image_problem = _image_problem(archived.image, stream)
    if image_problem is not None:
        problems.append(image_problem)
    return rr.verify(
        job_id,
        stream,
        msgspec.structs.asdict(row),
        problems=problems,
        stored_events=len(archived.events),
    )


def verify_lines(lines: Iterable[bytes]) -> Iterable[rr.VerifyResult | Header]:
    """The header, then one result per job line, streaming."""
    it = iter(lines)
    first = next(it, None)
    if first is None:
        raise ArchiveError("the file is empty: no header line")
    yield read_header(first)
    for number, line in enumerate(it, start=2):
        if line.strip():
            yield verify_line(line, number)
