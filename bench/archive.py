"""Retention: `archive` throughput on a synthetic history, and `replay --log` over its file.

A worker runs a few real jobs; one done job (8 events, usage recorded) is cloned --n times
with SQL (bench/growth.py's bulk load, each clone with its own image row and a chain
recomputed in SQL) over the last --days days. Then ``archive_run.run`` (what `imagen-actors
archive` runs) moves every clone older than half the span, --batch jobs per batch, to a
gzip file: jobs/s from opening the run to its manifest being finished (the file written,
fsynced and read back per batch, then deleted and recorded). Then the file is checked as
`replay --log FILE` does (chain, fold, row), in-process: jobs/s.

    .venv/bin/python bench/archive.py [--n 100000] [--batch 500]
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from datetime import timedelta
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
import growth

from imagen_actors.cli import archive_run
from imagen_actors.cli.reports import archive as af
from imagen_actors.cli.reports import replay as rr
from imagen_actors.db.gateway import Gateway

SCRIPT = Path(__file__).name


def verify_file(path: Path) -> tuple[float, int, int]:
    """(jobs/s, checked, mismatched) of the `replay --log` check."""
    t0 = time.perf_counter()
    tally = rr.Tally()
    with gzip.open(path, "rb") as fh:
        for result in af.verify_lines(fh):
            if isinstance(result, rr.VerifyResult):
                tally.add(result)
    return tally.checked / (time.perf_counter() - t0), tally.checked, len(tally.failed)


async def main(args: argparse.Namespace) -> None:
    run = c.Run()
    with c.temp_dir("imagen-bench-archive-") as tmp, c.private_database(tmp) as (dsn, db):
        async with c.client(dsn) as gw:
            settings = await c.pg_settings(gw)
            cfg = c.bench_config(tmp, dsn, latency_ms=0)
            await c.insert_backlog(gw, 3, 64)
            async with c.running_worker(cfg):
                await c.wait_all_settled(gw, 3, timeout=60, label="template")
            template = (await gw.fetch_sql("SELECT id FROM imagen.jobs LIMIT 1"))[0]["id"]
            t0 = time.perf_counter()
            async with Gateway.open(
                dsn, application_name="imagen-bench-load", pool_size=1, statement_timeout_ms=0
            ) as bulk:
                for sql in growth.bulk_sql(template, args.n, args.days, own_images=True):
                    await bulk.execute_sql(sql)
                await bulk.execute_sql("VACUUM ANALYZE")
            load_s = time.perf_counter() - t0
            cutoff = (await gw.fetch_sql("SELECT now() AS t"))[0]["t"] - timedelta(
                days=args.days / 2
            )
            target = tmp / "archive.jsonl.gz"
            summary = await archive_run.run(
                gw, kind="archive", path=target, cutoff=cutoff, batch_size=args.batch
            )
            left = await c.status_counts(gw)
            counted = (await gw.fetch_sql("SELECT count(*)::int AS n FROM imagen.jobs"))[0]["n"]
        rate, checked, mismatched = verify_file(target)
    run.header("archive: move finished streams to a file", args.n, db, settings)
    print(
        f"history loaded in {load_s:.0f} s; archived {summary.jobs:,} jobs, "
        f"{summary.events:,} events, {summary.images:,} images in {summary.seconds:.1f} s; "
        f"file {summary.bytes / 2**20:.1f} MiB ({summary.bytes / max(summary.jobs, 1):.0f} "
        f"bytes/job); left {counted:,} jobs, status counts {left}; replay --log: "
        f"{checked:,} checked, {mismatched} mismatched"
    )
    c.print_rows(
        [
            c.measured(
                f"archive throughput ({summary.jobs:,} of {args.n:,} jobs, batch {args.batch})",
                summary.jobs / summary.seconds,
                "jobs/s",
                SCRIPT,
                digits=0,
            ),
            c.measured(
                "replay --log of the archive file (chain + fold + row, in-process)",
                rate,
                "jobs/s",
                SCRIPT,
                digits=0,
            ),
        ]
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="cloned done jobs in the history")
    p.add_argument("--days", type=float, default=180.0, help="the history's span (days)")
    p.add_argument("--batch", type=int, default=archive_run.BATCH, help="jobs per batch")
    trio.run(main, p.parse_args())
