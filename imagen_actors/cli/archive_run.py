"""The database side of ``imagen-actors archive`` and ``forget-owner``.

A run is one ``imagen.archives`` row; then, a keyset page of jobs at a time: write the page
as one gzip member, fsync, read it back from disk and check it, and only then move the page
out with ``imagen.archive_streams`` (one transaction: the DELETEs and the batch's record).
A crash between the write and the delete leaves the page in the file past the recorded
length (``imagen.archives.bytes``) and the jobs still live: the next run takes them again
and nothing is lost; the manifest never names a job twice (``archived_jobs`` is keyed by
job). When the delete fails here, the file is cut back to the recorded length.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Final

import attrs
import msgspec
import trio

from imagen_actors.cli.reports import archive as af
from imagen_actors.core.errors import ConcurrencyError
from imagen_actors.db.gateway import Gateway

BATCH: Final = 500
# A page that went stale (a job retried between the read and the delete) is read again.
STALE_RETRIES: Final = 5
ZERO: Final = uuid.UUID(int=0)


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    archive_id: int | None
    kind: str
    file: str | None
    dry_run: bool
    jobs: int
    events: int
    images: int
    first_job_created_at: datetime | None = None
    last_job_created_at: datetime | None = None
    bytes: int = 0
    sha256: str | None = None
    seconds: float = 0.0


@attrs.define
class _Member:
    offset: int
    length: int
    sha256: str


def _append_member(fh: BinaryIO, lines: Sequence[bytes]) -> _Member:
    """Write ``lines`` as one gzip member at the end, fsync, and read it back from disk: the
    bytes must be those written and must decompress to exactly those lines."""
    member = gzip.compress(b"".join(lines), compresslevel=6, mtime=0)
    offset = fh.seek(0, os.SEEK_END)
    fh.write(member)
    fh.flush()
    os.fsync(fh.fileno())
    back = os.pread(fh.fileno(), len(member), offset)
    digest = hashlib.sha256(member).hexdigest()
    if hashlib.sha256(back).hexdigest() != digest:
        raise OSError(f"{fh.name}: the batch read back at byte {offset} is not what was written")
    if gzip.decompress(back).count(b"\n") != len(lines):
        raise OSError(f"{fh.name}: the batch read back at byte {offset} lost lines")
    return _Member(offset, len(member), digest)


def _cut_back(fh: BinaryIO, length: int) -> None:
    fh.truncate(length)
    fh.flush()
    os.fsync(fh.fileno())


def _create(path: Path) -> tuple[BinaryIO, str]:
    """The new file, open for writing and reading back, and its absolute name. O_EXCL:
    never overwrite, even a file that appeared since the command checked."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
    return os.fdopen(fd, "r+b"), str(path.resolve())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def would_move(
    gw: Gateway, kind: str, cutoff: datetime | None, owner: uuid.UUID | None
) -> Summary:
    """``--dry-run``: what a run would move, changing nothing."""
    row = await gw.fetchrow("archive_would_move", cutoff, owner)
    assert row is not None
    return Summary(
        archive_id=None,
        kind=kind,
        file=None,
        dry_run=True,
        jobs=row["jobs"],
        events=row["events"],
        images=row["images"],
        first_job_created_at=row["first_job_created_at"],
        last_job_created_at=row["last_job_created_at"],
    )


async def _move_page(
    gw: Gateway,
    archive_id: int,
    batch: int,
    rows: Sequence[dict[str, Any]],
    fh: BinaryIO | None,
    recorded: int,
) -> tuple[int, int, int, int]:
    """Write (with a file) and move out one page; (jobs, events, images, recorded bytes)."""
    member: _Member | None = None
    if fh is not None:
        lines = [af.job_line(r)[0] for r in rows]
        member = await trio.to_thread.run_sync(_append_member, fh, lines)
    try:
        out = await gw.fetchrow(
            "archive_streams",
            archive_id,
            batch,
            [r["id"] for r in rows],
            [r["version"] for r in rows],
            None if member is None else member.offset,
            None if member is None else member.length,
            None if member is None else member.sha256,
            None if member is None else member.offset + member.length,
        )
    except BaseException:
        if fh is not None:
            # Unrecorded, so not archived: the file ends where the record says it does.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_cut_back, fh, recorded)
        raise
    assert out is not None
    end = recorded if member is None else member.offset + member.length
    return out["jobs"], out["events"], out["images"], end


async def run(
    gw: Gateway,
    *,
    kind: str,
    path: Path | None,
    cutoff: datetime | None,
    owner: uuid.UUID | None = None,
    batch_size: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Archive (``path`` the new file, ``cutoff``) or forget (``owner``, no file)."""
    started = trio.current_time()
    fh: BinaryIO | None = None
    name: str | None = None
    if path is not None:
        fh, name = await trio.to_thread.run_sync(_create, path)
    try:
        archive_id: int = await gw.fetchval(
            "archive_open", kind, cutoff, owner, name, None if fh is None else af.FORMAT_VERSION
        )
    except BaseException:
        if fh is not None and path is not None:
            fh.close()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(path.unlink)
        raise
    recorded = 0
    if fh is not None and path is not None:
        header = af.Header(
            format=af.FORMAT,
            version=af.FORMAT_VERSION,
            archive_id=archive_id,
            kind=kind,
            cutoff=cutoff,
            created_at=datetime.now(UTC),
        )
        member = await trio.to_thread.run_sync(_append_member, fh, [af.header_line(header)])
        recorded = member.length
        await trio.to_thread.run_sync(_fsync_dir, path)
    jobs = events = images = 0
    try:
        after, batch = ZERO, 0
        while True:
            for attempt in range(STALE_RETRIES + 1):
                rows = await gw.fetch("archive_page", after, cutoff, batch_size, owner)
                if not rows:
                    break
                try:
                    moved = await _move_page(gw, archive_id, batch + 1, rows, fh, recorded)
                    break
                except ConcurrencyError:
                    if attempt == STALE_RETRIES:
                        raise
            if not rows:
                break
            batch += 1
            j, e, i, recorded = moved
            jobs, events, images = jobs + j, events + e, images + i
            after = rows[-1]["id"]
            if progress is not None:
                progress(jobs)
    finally:
        if fh is not None:
            fh.close()
    sha = None if path is None else await trio.to_thread.run_sync(file_sha256, path)
    await gw.fetchval("archive_finish", archive_id, recorded, sha)
    row = await gw.fetchrow("archive_run", archive_id)
    assert row is not None
    return Summary(
        archive_id=archive_id,
        kind=kind,
        file=row["file_name"],
        dry_run=False,
        jobs=jobs,
        events=events,
        images=images,
        first_job_created_at=row["first_job_created_at"],
        last_job_created_at=row["last_job_created_at"],
        bytes=recorded,
        sha256=sha,
        seconds=trio.current_time() - started,
    )
