"""Throughput on a backlog: N jobs inserted in one INSERT ... SELECT generate_series, then
one worker started; jobs/s from the first JobClaimed to the last jobs.finished_at (both
database timestamps). Zero-latency mock backend, 64x64 by default.

Row for docs/performance.md: the throughput. Supporting figures: the span, claim -> done,
server transactions and WAL flushes per job (pg_stat_database / pg_stat_wal), and the
worker's CPU per job (this process's user+sys, which also covers the client's polls).

    .venv/bin/python bench/throughput.py [--n 5000] [--size 64]
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

from imagen_actors.db.gateway import Gateway

SCRIPT = Path(__file__).name


def thread_cpu_s() -> dict[str, float]:
    """user + system CPU of each live thread of this process so far, by thread name."""
    out: dict[str, float] = {}
    for t in threading.enumerate():
        if t.native_id is None:
            continue
        try:
            stat = Path(f"/proc/self/task/{t.native_id}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        name = "Trio worker threads" if t.name.startswith("Trio thread") else t.name
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out[name] = out.get(name, 0.0) + cpu
    return out


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def server_counters(gw: Gateway) -> dict[str, int]:
    """Committed transactions in this database and WAL syncs server-wide (pg_stat_*)."""
    row = (
        await gw.fetch_sql(
            "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())"
            " AS xacts, (SELECT wal_sync FROM pg_stat_wal) AS wal_sync"
        )
    )[0]
    return {"xacts": row["xacts"], "wal_sync": row["wal_sync"]}


async def main(n: int, size: int, timeout: float) -> None:
    run = c.Run()
    with c.temp_dir("imagen-bench-throughput-") as tmp, c.private_database(tmp) as (dsn, db):
        async with c.client(dsn) as gw:
            settings = await c.pg_settings(gw)
            await c.insert_backlog(gw, n, size)
            before = await server_counters(gw)
            cfg = c.bench_config(tmp, dsn, latency_ms=0, poll_interval_s=3600)
            cpu_before, threads_before = own_cpu_s(), thread_cpu_s()
            server_before = c.server_cpu_s(tmp)
            async with c.running_worker(cfg):
                await c.wait_all_settled(gw, n, timeout=timeout, label="throughput")
                threads = thread_cpu_s()
                server_after = c.server_cpu_s(tmp)
            cpu = own_cpu_s() - cpu_before
            # The worker's connections are closed now, so their statistics are flushed.
            await trio.sleep(1.0)
            after = await server_counters(gw)
            row = (
                await gw.fetch_sql(
                    "SELECT (SELECT min(occurred_at) FROM imagen.job_events"
                    "        WHERE type = 'JobClaimed') AS first_claim,"
                    " max(finished_at) AS last_finished,"
                    " count(*) FILTER (WHERE status = 'done') AS done,"
                    " (SELECT max(occurred_at) FROM imagen.job_events WHERE type = 'UsageRecorded')"
                    "   AS last_usage"
                    " FROM imagen.jobs"
                )
            )[0]
            stages = (
                await gw.fetch_sql(
                    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM"
                    "  j.finished_at - e.occurred_at))::float8 AS claim_to_done"
                    " FROM imagen.jobs j JOIN imagen.job_events e"
                    "   ON e.job_id = j.id AND e.type = 'JobClaimed'"
                )
            )[0]
            steps = (
                await gw.fetch_sql(
                    "WITH e AS (SELECT job_id, type, occurred_at FROM imagen.job_events),"
                    " j AS (SELECT job_id,"
                    "   max(occurred_at) FILTER (WHERE type = 'JobClaimed') AS claimed,"
                    "   max(occurred_at) FILTER (WHERE type = 'GenerationStarted') AS started,"
                    "   max(occurred_at) FILTER (WHERE type = 'GenerationSucceeded') AS succeeded,"
                    "   max(occurred_at) FILTER (WHERE type = 'JobCompleted') AS completed"
                    "   FROM e GROUP BY job_id)"
                    " SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY"
                    "   extract(epoch FROM started - claimed))::float8 AS claim_start,"
                    " percentile_cont(0.5) WITHIN GROUP (ORDER BY"
                    "   extract(epoch FROM succeeded - started))::float8 AS start_succeeded,"
                    " percentile_cont(0.5) WITHIN GROUP (ORDER BY"
                    "   extract(epoch FROM completed - succeeded))::float8 AS succeeded_completed"
                    " FROM j"
                )
            )[0]
            counts = await c.status_counts(gw)
    span = (row["last_finished"] - row["first_claim"]).total_seconds()
    usage_span = (row["last_usage"] - row["first_claim"]).total_seconds()
    run.header("throughput (backlog, one worker)", n, db, settings)
    print(f"jobs by status: {counts}")
    c.print_rows(
        [
            c.measured(
                f"throughput, {n:,}-job backlog, one worker (0 ms mock)",
                row["done"] / span,
                "jobs/s",
                SCRIPT,
                digits=0,
                target=c.at_least(1000, "jobs/s"),
            )
        ]
    )
    print("supporting:")
    c.print_table(
        [
            ("first claim -> last done", f"{span:.2f} s"),
            ("per job (span / n)", c.ms(span / row["done"])),
            ("claim -> done p50", c.ms(stages["claim_to_done"])),
            ("  JobClaimed -> GenerationStarted p50", c.ms(steps["claim_start"])),
            ("  GenerationStarted -> GenerationSucceeded p50", c.ms(steps["start_succeeded"])),
            ("  GenerationSucceeded -> JobCompleted p50", c.ms(steps["succeeded_completed"])),
            ("first claim -> last usage row", f"{usage_span:.2f} s"),
            ("server transactions per job", f"{(after['xacts'] - before['xacts']) / n:.1f}"),
            ("WAL flushes (fsync) per job", f"{(after['wal_sync'] - before['wal_sync']) / n:.1f}"),
            ("worker process CPU per job (user+sys / n)", c.ms(cpu / n)),
            *(
                (f"  of which thread {name}", c.ms((used - threads_before.get(name, 0.0)) / n))
                for name, used in sorted(threads.items())
            ),
            (
                "Postgres CPU per job (embedded cluster, every process)",
                "n/a (not embedded)"
                if server_before is None or server_after is None
                else c.ms((server_after - server_before) / n),
            ),
        ]
    )
    print("(server counters include this script's own progress polls: 4 per second)")


if __name__ == "__main__":
    p = c.parser(__doc__.splitlines()[0], default_n=5000)
    p.add_argument("--timeout", type=float, default=600, help="give up after (s)")
    args = p.parse_args()
    trio.run(main, args.n, args.size, args.timeout)
