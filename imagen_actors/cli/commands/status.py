"""imagen-actors status: counts by status, running jobs with worker and lease, the backends
and stores live workers report unhealthy (their jobs wait), pending jobs whose backend no
worker offers yet, latest failures."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import trio

from imagen_actors.cli import arguments
from imagen_actors.cli.main import command
from imagen_actors.config import settings as config
from imagen_actors.db import database


def register(sub: Any) -> None:
    p = command(sub, "status", "show the queue: counts, running jobs, latest failures", run)
    p.add_argument(
        "--failures",
        type=arguments.count(0, "give how many failures to list, 0 or more, e.g. --failures 5"),
        default=5,
        help="how many failures to list",
    )


def describe_unhealthy(row: Mapping[str, Any]) -> str:
    """ "flux-schnell-local down since 12:03: connection refused (worker gpu-host:worker)"."""
    kind = "misconfigured" if row["fault"] == "configuration" else "down"
    since = row["since"]
    when = f" since {since.astimezone():%H:%M}" if since is not None else ""
    return f"{row['dependency']} {kind}{when}: {row['reason']} (worker {row['worker_id']})"


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)

    async def go() -> None:
        async with database.open_database(cfg, application_name="imagen-actors status") as gw:
            counts = {r["status"]: r["n"] for r in await gw.fetch("status_counts")}
            running = await gw.fetch("running_jobs")
            failures = await gw.fetch("latest_failures", args.failures)
            unserved = await gw.fetch("unserved_backends", cfg.worker.backend_absent_after_s)
            unhealthy = await gw.unhealthy_dependencies(cfg.worker.backend_absent_after_s)
        order = ["pending", "running", "done", "failed", "cancelled"]
        print("jobs: " + "  ".join(f"{s} {counts.get(s, 0)}" for s in order))
        if running:
            print("running:")
            for r in running:
                print(
                    f"  {r['id']}  {r['worker_id']}  attempt {r['attempts']}/"
                    f"{r['max_attempts']}  lease until {r['lease_expires_at']:%H:%M:%S}  "
                    f"{r['backend']}  {r['prompt']!r}"
                )
        if unhealthy:
            print("waiting for a dependency (jobs stay pending, attempts untouched):")
            for r in unhealthy:
                print(f"  {describe_unhealthy(r)}")
        if unserved:
            grace = cfg.worker.unserved_backend_grace_s
            print("waiting for a worker:")
            for r in unserved:
                print(
                    f"  no worker offers backend {r['backend']!r} yet: {r['n']} pending, the "
                    f"oldest for {r['waited_s']:.0f} s; they fail after {grace:g} s "
                    "(worker.unserved_backend_grace_s) unless a worker with it starts"
                )
        if failures:
            print("latest failures:")
            for r in failures:
                print(
                    f"  {r['id']}  {r['finished_at']:%Y-%m-%d %H:%M:%S}  {r['backend']}  "
                    f"{r['error']}"
                )

    trio.run(go)
    return 0
