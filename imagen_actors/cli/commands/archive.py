"""imagen-actors archive --before 90d --to FILE: move whole streams of finished jobs out of
the live tables into a gzip JSONL file that ``replay --log FILE`` checks, recorded in
``imagen.archives`` (schema 0017). The one sanctioned way around the append-only log."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import trio

from imagen_actors.cli import archive_run, arguments, exitcodes
from imagen_actors.cli.main import command
from imagen_actors.cli.reports import audit as ar
from imagen_actors.config import settings as config
from imagen_actors.core.errors import UsageError
from imagen_actors.db import database

BATCH_FIX = "give how many jobs per batch, 1 to 10000, e.g. --batch 500"


def before(text: str) -> datetime:
    """``--before``: the same forms as ``audit --since`` (``90d``, ``2026-01-01``), in the
    past."""
    try:
        at = ar.parse_since(text, flag="--before")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--before ")) from None
    if at is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} would archive every finished job; give an age like 90d or a date"
        )
    if at > datetime.now(UTC):
        raise argparse.ArgumentTypeError(
            f"{text!r} is in the future; give an age like 90d or a past date"
        )
    return at


def batch(text: str) -> int:
    value = arguments.count(1, BATCH_FIX)(text)
    if value > 10_000:
        raise argparse.ArgumentTypeError(f"{value} is more than 10000; {BATCH_FIX}")
    return value


def register(sub: Any) -> None:
    p = command(
        sub,
        "archive",
        "move finished jobs (events, row, image row) older than --before into a gzip JSONL "
        "file, recorded in imagen.archives",
        run,
    )
    p.add_argument(
        "--before",
        required=True,
        type=before,
        metavar="AGE|DATE",
        help="jobs whose stream ended before this: a span back (90d, 12w) or an ISO date",
    )
    p.add_argument(
        "--to",
        type=Path,
        metavar="FILE",
        help="the new archive file (.jsonl.gz); never overwritten",
    )
    p.add_argument("--dry-run", action="store_true", help="count what would move; change nothing")
    p.add_argument(
        "--batch",
        type=batch,
        default=archive_run.BATCH,
        help=f"jobs per batch: one gzip member, one transaction (default {archive_run.BATCH})",
    )
    p.add_argument("--json", action="store_true", help="machine-readable summary")


def describe(s: archive_run.Summary) -> str:
    verb = "would move" if s.dry_run else ("archived" if s.kind == "archive" else "removed")
    text = f"{verb} {s.jobs} job(s), {s.events} event(s), {s.images} image row(s)"
    if s.first_job_created_at is not None and s.last_job_created_at is not None:
        text += (
            f" created {s.first_job_created_at:%Y-%m-%d %H:%M} .. "
            f"{s.last_job_created_at:%Y-%m-%d %H:%M} UTC"
        )
    if not s.dry_run:
        if s.file is not None:
            text += f"\n  file {s.file} ({s.bytes} bytes, sha256 {s.sha256})"
        text += f"\n  recorded as imagen.archives id {s.archive_id} in {s.seconds:.1f}s"
        if s.kind == "archive":
            text += "; stored image objects stay in storage"
    return text


def emit(args: argparse.Namespace, summary: archive_run.Summary) -> None:
    if args.json:
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
    else:
        print(describe(summary))


def run(args: argparse.Namespace) -> int:
    path: Path | None = args.to
    if path is None and not args.dry_run:
        raise UsageError("--to FILE is required (the new archive file), or give --dry-run")
    if path is not None and (path.exists() or path.is_symlink()):
        raise UsageError(f"--to {path} exists; archive never overwrites: name a new file")
    if path is not None and not path.parent.is_dir():
        raise UsageError(f"--to {path}: directory {path.parent} does not exist")
    cfg = config.load(args.config)

    async def go() -> int:
        async with database.open_database(cfg, application_name="imagen-actors archive") as gw:
            if args.dry_run:
                summary = await archive_run.would_move(gw, "archive", args.before, None)
            else:
                summary = await archive_run.run(
                    gw, kind="archive", path=path, cutoff=args.before, batch_size=args.batch
                )
        emit(args, summary)
        return exitcodes.OK

    return trio.run(go)
