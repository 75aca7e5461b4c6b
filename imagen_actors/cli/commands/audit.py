"""imagen-actors audit: canned reports on the event log (latency, failures, stuck, …).

The SQL is in ``sql/audit.sql`` over the views of ``schema/0005_audit_views.sql``;
docs/audit.md gives the same reports as raw SQL for a DBA.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import trio

from imagen_actors.cli import arguments, exitcodes
from imagen_actors.cli.main import command
from imagen_actors.cli.reports import audit as ar
from imagen_actors.config import settings as config
from imagen_actors.db import database
from imagen_actors.db.gateway import Gateway

DEFAULT_PENDING_OLDER_THAN_S: Final = 600.0
# The window of latency, failures and throughput unless --since says otherwise: the reports
# read that window's events, so their cost follows the window, not the whole history.
DEFAULT_SINCE: Final = "7d"
DEFAULT_STUCK_LIMIT: Final = 100
Report = Callable[[Gateway, argparse.Namespace], Awaitable[tuple[Any, str]]]


def register(sub: Any) -> None:
    p = command(sub, "audit", "canned reports on the job event log", run)
    reports = p.add_subparsers(dest="report", metavar="REPORT", required=True)

    def report(name: str, help_text: str, fn: Report) -> argparse.ArgumentParser:
        r: argparse.ArgumentParser = reports.add_parser(name, help=help_text, description=help_text)
        # SUPPRESS: a --config given before the report name is not reset by the default.
        r.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="config file")
        r.add_argument("--json", action="store_true", help="machine-readable output")
        r.set_defaults(report_fn=fn)
        return r

    since_help = (
        "only since this ISO date/datetime (UTC if naive) or span back (24h, 7d), or 'all' "
        f"(the whole history: slow on a large one); default {DEFAULT_SINCE}"
    )
    lat = report("latency", "p50/p95/p99 of queue wait, generation, upload, total", latency)
    lat.add_argument("--since", type=since, default=DEFAULT_SINCE, help=since_help)
    lat.add_argument("--backend", type=arguments.backend, help="only this backend instance")
    lat.add_argument("--plot", metavar="FILE.png", type=png_path, help="also draw a bar chart")
    fail = report("failures", "failures grouped by error class and message", failures)
    fail.add_argument("--since", type=since, default=DEFAULT_SINCE, help=since_help)
    stuck_p = report("stuck", "running past the lease; pending for too long", stuck)
    stuck_p.add_argument(
        "--pending-older-than",
        metavar="SECONDS",
        type=arguments.seconds,
        default=DEFAULT_PENDING_OLDER_THAN_S,
        help=f"pending this long counts as stuck (default {DEFAULT_PENDING_OLDER_THAN_S:.0f})",
    )
    stuck_p.add_argument(
        "--limit",
        type=arguments.count(1, "give how many stuck jobs to list, 1 or more, e.g. --limit 100"),
        default=DEFAULT_STUCK_LIMIT,
        help=f"list at most this many, the most overdue first (default {DEFAULT_STUCK_LIMIT}); "
        "the total is counted",
    )
    thr = report("throughput", "jobs finished per hour by outcome", throughput)
    thr.add_argument("--since", type=since, default=DEFAULT_SINCE, help=since_help)
    thr.add_argument("--plot", metavar="FILE.png", type=png_path, help="also draw a bar chart")
    own = report("owner", "one owner's jobs with status and image path", owner)
    own.add_argument(
        "owner_id", metavar="ID", type=arguments.uuid_of("owner user id"), help="owner user id"
    )
    own.add_argument(
        "--limit",
        type=arguments.count(1, "give how many jobs to list, 1 or more, e.g. --limit 100"),
        default=100,
        help="at most this many (default 100)",
    )


def since(text: str) -> datetime | None:
    """``--since`` as a time, or None for ``all``."""
    try:
        return ar.parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--since ")) from None


def png_path(text: str) -> Path:
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a .png file name; the chart is a PNG, e.g. --plot latency.png"
        )
    return path


def _since(args: argparse.Namespace) -> datetime | None:
    value: datetime | None = args.since
    return value


async def latency(gw: Gateway, args: argparse.Namespace) -> tuple[Any, str]:
    rows = ar.rows_as(ar.LatencyRow, await gw.fetch("audit_latency", _since(args), args.backend))
    text = ar.format_latency(rows)
    if args.plot is not None:
        ar.plot_latency(rows, args.plot)
        text += f"\nplot written to {args.plot}"
    return rows, text


async def failures(gw: Gateway, args: argparse.Namespace) -> tuple[Any, str]:
    rows = ar.rows_as(ar.FailureRow, await gw.fetch("audit_failures", _since(args)))
    return rows, ar.format_failures(rows)


async def stuck(gw: Gateway, args: argparse.Namespace) -> tuple[Any, str]:
    rows = ar.rows_as(
        ar.StuckRow, await gw.fetch("audit_stuck", args.pending_older_than, args.limit)
    )
    return rows, ar.format_stuck(rows)


async def throughput(gw: Gateway, args: argparse.Namespace) -> tuple[Any, str]:
    rows = ar.rows_as(ar.ThroughputRow, await gw.fetch("audit_throughput", _since(args)))
    text = ar.format_throughput(rows)
    if args.plot is not None:
        ar.plot_throughput(rows, args.plot)
        text += f"\nplot written to {args.plot}"
    return rows, text


async def owner(gw: Gateway, args: argparse.Namespace) -> tuple[Any, str]:
    owner_id: uuid.UUID = args.owner_id
    rows = ar.rows_as(ar.OwnerJobRow, await gw.fetch("audit_owner", owner_id, args.limit))
    return rows, ar.format_owner(rows)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "plot", None) is not None:
        ar.pyplot()  # fail before the query when the plot extra is not installed
    cfg = config.load(getattr(args, "config", None))
    fn: Report = args.report_fn

    async def go() -> tuple[Any, str]:
        async with database.open_database(cfg, application_name="imagen-actors audit") as gw:
            return await fn(gw, args)

    value, text = trio.run(go)
    if args.json:
        sys.stdout.write(ar.to_json(value).decode() + "\n")
    else:
        print(text)
    return exitcodes.OK
