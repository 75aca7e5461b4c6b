"""imagen-actors usage: images, estimated cost and p50 latency by backend and model."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import msgspec
import trio

from imagen_actors.cli import arguments
from imagen_actors.cli.main import command
from imagen_actors.config import settings as config
from imagen_actors.db import database

RAW_LIMIT = 1000


def register(sub: Any) -> None:
    p = command(sub, "usage", "usage report: images, estimated cost, p50 latency", run)
    p.add_argument(
        "--since",
        type=arguments.day,
        default=datetime(1970, 1, 1, tzinfo=UTC),
        help="YYYY-MM-DD (default: everything)",
    )
    p.add_argument("--raw", action="store_true", help=f"list rows (newest {RAW_LIMIT})")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def format_table(groups: list[dict[str, Any]], totals: dict[str, Any]) -> str:
    header = ("backend", "model", "images", "cost_usd", "p50_ms")
    rows = [
        (
            g["backend"],
            g["model"],
            str(g["images"]),
            f"{g['cost_usd']:.4f}",
            f"{g['p50_latency_ms']:.0f}",
        )
        for g in groups
    ]
    p50 = totals["p50_latency_ms"]
    rows.append(
        (
            "TOTAL",
            "",
            str(totals["images"]),
            f"{totals['cost_usd']:.4f}",
            "-" if p50 is None else f"{p50:.0f}",
        )
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    since: datetime = args.since

    async def go() -> None:
        async with database.open_database(cfg, application_name="imagen-actors usage") as gw:
            if args.raw:
                rows = await gw.fetch("usage_raw", since, RAW_LIMIT)
                if args.json:
                    print(msgspec.json.encode(rows).decode())
                    return
                for r in rows:
                    print(
                        f"{r['created_at']:%Y-%m-%d %H:%M:%S}  {r['backend']}  {r['model']}  "
                        f"{r['latency_ms']} ms  ${r['cost_usd']:.4f}  {r['caller']}  "
                        f"{r['prompt_hash'][:12]}"
                    )
                return
            groups = await gw.fetch("usage_by_backend_model", since)
            totals = await gw.fetchrow("usage_totals", since)
            assert totals is not None
            if args.json:
                print(msgspec.json.encode({"groups": groups, "totals": totals}).decode())
            else:
                print(format_table(groups, totals))

    trio.run(go)
    return 0
