"""One imagen worker against PgQueuer 1.6 on the same Postgres, in the same run: N no-op
jobs each, three repeats, alternating; jobs/s and CPU ms/job for both, and their ratio.

Needs the bench extra (``pip install -e '.[bench]'``: PgQueuer); the test suite does not.

- PgQueuer: ``bench/_pgqueuer_drain.py`` in a child process (plain asyncio, one asyncpg
  connection, PgQueuer's default ``batch_size`` 10, ``mode=drain``); the N jobs are enqueued
  first, then jobs/s = N / the wall time of ``QueueManager.run`` and CPU = the child's
  ``process_time`` over that run.
- imagen: one real ``python -m imagen_actors worker`` process (0 ms mock, 64x64, local
  storage), started and listening before the N jobs are inserted in one INSERT; jobs/s =
  done / (last ``finished_at`` - first ``JobClaimed``), the database's clock; CPU = the
  worker's user + system time (/proc/<pid>/stat) from just before the INSERT until every job
  is done and its usage recorded, so start-up is not counted. A no-op for imagen still
  renders, stores and records an image: it is the worker's whole path with a 0 ms backend.

The ratio row is imagen's jobs/s over PgQueuer's in the same repeat (issue 16's target:
>= 0.25); the row shows the median repeat, the supporting table every repeat.

    .venv/bin/python bench/pgqueuer_side_by_side.py [--n 1000] [--repeats 3]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
import _processes as procs

from imagen_actors.db.gateway import Gateway

SCRIPT = Path(__file__).name
CHILD = Path(__file__).with_name("_pgqueuer_drain.py")


def pgqueuer_repeat(dsn: str, n: int) -> tuple[float, float]:
    """(jobs/s, CPU s/job) of one PgQueuer drain of ``n`` jobs."""
    done = subprocess.run(
        [sys.executable, str(CHILD), dsn, str(n)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"PgQueuer child failed (is the bench extra installed?):\n{done.stderr}")
    figures = json.loads(done.stdout)
    if figures["done"] != n or figures["left"]:
        raise SystemExit(f"PgQueuer did not finish every job: {figures}")
    return n / figures["wall_s"], figures["cpu_s"] / n


async def imagen_repeat(
    gw: Gateway, worker: procs.WorkerProcess, n: int, size: int, first: int
) -> tuple[float, float]:
    """(jobs/s, CPU s/job) of the listening worker draining ``n`` freshly inserted jobs
    (the earlier repeats' jobs stay: the event log is append-only)."""
    cpu0 = procs.cpu_seconds(worker.pid)
    await c.insert_backlog(gw, n, size, first=first)
    await c.wait_all_settled(gw, first - 1 + n, timeout=900, label="imagen")
    cpu = procs.cpu_seconds(worker.pid) - cpu0
    row = (
        await gw.fetch_sql(
            "SELECT count(*) FILTER (WHERE j.status = 'done') AS done,"
            " min(e.occurred_at) AS first_claim, max(j.finished_at) AS last_finished"
            " FROM imagen.jobs j JOIN imagen.job_events e"
            "   ON e.job_id = j.id AND e.type = 'JobClaimed'"
            " WHERE j.prompt = ANY($1::text[])",
            [f"bench job {i}" for i in range(first, first + n)],
        )
    )[0]
    span = (row["last_finished"] - row["first_claim"]).total_seconds()
    return row["done"] / span, cpu / n


async def main(n: int, size: int, repeats: int) -> None:
    run = c.Run()
    pgq: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    with c.temp_dir("imagen-bench-pgqueuer-") as tmp, c.private_database(tmp) as (dsn, db):
        async with c.client(dsn) as gw:
            settings = await c.pg_settings(gw)
            path = c.write_config(tmp, dsn, latency_ms=0, poll_interval_s=3600)
            with procs.worker_processes([(path, "bench")]) as workers:
                await procs.wait_listening(workers)
                for r in range(repeats):
                    pgq.append(await trio.to_thread.run_sync(pgqueuer_repeat, dsn, n))
                    ours.append(await imagen_repeat(gw, workers[0], n, size, 1 + r * n))
                    print(
                        f"  repeat {r + 1}: PgQueuer {pgq[-1][0]:,.0f} jobs/s "
                        f"{pgq[-1][1] * 1000:.2f} ms CPU/job; imagen {ours[-1][0]:,.1f} jobs/s "
                        f"{ours[-1][1] * 1000:.2f} ms CPU/job",
                        file=sys.stderr,
                    )
    ratios = [o[0] / p[0] for o, p in zip(ours, pgq, strict=True)]
    median = sorted(range(repeats), key=lambda i: ratios[i])[repeats // 2]
    run.header("imagen worker vs PgQueuer 1.6, side by side", n, db, settings)
    c.print_rows(
        [
            c.measured(
                "one worker's no-op throughput / PgQueuer's, same run (median repeat)",
                ratios[median],
                "x",
                SCRIPT,
                digits=3,
                target=c.at_least(0.25, "x"),
                note=f"{ours[median][0]:,.0f} against {pgq[median][0]:,.0f} jobs/s",
            ),
            c.measured(
                "worker CPU per job (0 ms mock, median repeat)",
                statistics.median(o[1] for o in ours) * 1000,
                "ms",
                SCRIPT,
                target=c.at_most(5, "ms"),
                note=f"PgQueuer {statistics.median(p[1] for p in pgq) * 1000:.2f} ms",
            ),
        ]
    )
    print("supporting:")
    rows: list[tuple[str, str]] = []
    for i in range(repeats):
        rows.append(
            (
                f"repeat {i + 1}: jobs/s imagen / PgQueuer (ratio)",
                f"{ours[i][0]:,.1f} / {pgq[i][0]:,.0f} ({ratios[i]:.3f})",
            )
        )
        rows.append(
            (
                f"repeat {i + 1}: CPU per job imagen / PgQueuer",
                f"{ours[i][1] * 1000:.2f} / {pgq[i][1] * 1000:.3f} ms",
            )
        )
    c.print_table(rows)


if __name__ == "__main__":
    p = c.parser(__doc__.splitlines()[0], default_n=1000)
    p.add_argument("--repeats", type=int, default=3, help="alternating repeats (default 3)")
    args = p.parse_args()
    trio.run(main, args.n, args.size, args.repeats)
