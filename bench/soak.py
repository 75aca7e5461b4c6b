"""Soak: 10,000 jobs through one worker process, its RSS sampled every 500 completed jobs.

One real ``python -m imagen_actors worker --config FILE`` subprocess (so the RSS is the
worker's own), mock backend at 0 ms, 64x64, on a private database (embedded pgserver or
$IMAGEN_BENCH_DATABASE_URL). The queue is fed in batches, like a UI that keeps submitting:
500 jobs at a time (one INSERT ... SELECT each) whenever fewer than 250 are pending, until N
have been inserted; the worker never sees the whole backlog at once.

Every 0.1 s the script counts done jobs; the first time the count reaches each multiple of
500 it reads the worker's VmRSS from /proc/<pid>/status (and its CPU time from
/proc/<pid>/stat). The sample is taken within one poll of the mark, so "after 500 jobs" can
be a few jobs more; the table shows the count actually read.

  growth     = RSS at the 10,000 mark - RSS at the 5,000 mark (absolute and %)
  jobs/s     = done jobs / (last jobs.finished_at - first JobClaimed.occurred_at)

Rows for docs/performance.md: RSS at 5,000 and 10,000 jobs, the growth between them, and
jobs/s over the run. The whole series (with jobs/s per 500-job window) follows.

    .venv/bin/python bench/soak.py [--n 10000] [--every 500] [--size 64]
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
import _processes as procs

from imagen_actors.db.gateway import Gateway

SCRIPT = Path(__file__).name
BATCH = 500  # jobs per INSERT while feeding the queue
LOW_WATER = 250  # insert the next batch when fewer than this many are pending
POLL_S = 0.1


@dataclass(frozen=True)
class Sample:
    mark: int  # the multiple of --every this sample stands for
    done: int  # done jobs when it was read
    rss_kib: int
    cpu_s: float
    at: float  # time.monotonic()


async def feed_and_sample(
    gw: Gateway, worker: procs.WorkerProcess, n: int, size: int, every: int, timeout: float
) -> list[Sample]:
    """Keep the queue fed, sample the worker at each mark; return once all N are settled."""
    samples = [
        Sample(0, 0, procs.rss_kib(worker.pid), procs.cpu_seconds(worker.pid), time.monotonic())
    ]
    inserted = 0
    next_mark = every
    last_report = time.monotonic()
    with trio.fail_after(timeout):
        while True:
            row = (
                await gw.fetch_sql(
                    "SELECT count(*) FILTER (WHERE status = 'done') AS done,"
                    " count(*) FILTER (WHERE status = 'pending') AS pending,"
                    " count(*) FILTER (WHERE status IN ('done','failed','cancelled')) AS term"
                    " FROM imagen.jobs"
                )
            )[0]
            while next_mark <= n and row["done"] >= next_mark:
                rss, cpu = procs.rss_kib(worker.pid), procs.cpu_seconds(worker.pid)
                samples.append(Sample(next_mark, row["done"], rss, cpu, time.monotonic()))
                next_mark += every
            if inserted < n and row["pending"] < LOW_WATER:
                batch = min(BATCH, n - inserted)
                await c.insert_backlog(gw, batch, size, first=inserted + 1)
                inserted += batch
            if inserted >= n and row["term"] >= n:
                break
            if worker.proc.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{worker.log_tail()}")
            if time.monotonic() - last_report >= 15:
                last_report = time.monotonic()
                print(f"  [soak] {row['done']}/{n} done", file=sys.stderr)
            await trio.sleep(POLL_S)
    # Usage rows trail "done" a little; wait so the worker is idle when it is stopped.
    await c.wait_all_settled(gw, n, timeout=60, label="soak")
    return samples


def at_mark(samples: list[Sample], mark: int) -> Sample | None:
    return next((s for s in samples if s.mark == mark), None)


def print_series(samples: list[Sample]) -> None:
    print("| jobs (mark) | done when read | RSS | RSS vs start | jobs/s since previous |")
    print("|---|---|---|---|---|")
    for prev, s in zip([None, *samples], samples, strict=False):
        rate = "—"
        if prev is not None and s.at > prev.at:
            rate = f"{(s.done - prev.done) / (s.at - prev.at):.0f}"
        delta = s.rss_kib - samples[0].rss_kib
        print(
            f"| {s.mark:,} | {s.done:,} | {c.mib(s.rss_kib)} | {delta / 1024:+.1f} MiB | {rate} |"
        )
    print()


async def main(n: int, size: int, every: int) -> None:
    run = c.Run()
    with c.temp_dir("imagen-bench-soak-") as tmp, c.private_database(tmp) as (dsn, db):
        async with c.client(dsn) as gw:
            settings = await c.pg_settings(gw)
            path = c.write_config(tmp, dsn, name="soak", latency_ms=0, poll_interval_s=5)
            with procs.worker_processes([(path, "soak-host")]) as (worker,):
                await procs.wait_listening([worker])
                samples = await feed_and_sample(gw, worker, n, size, every, timeout=n / 5 + 120)
                hwm = procs.rss_kib(worker.pid, "VmHWM")
            rate, span = await c.done_rate(gw)
            counts = await c.status_counts(gw)
    half, full = at_mark(samples, (n // 2 // every) * every), at_mark(samples, n)
    run.header("soak (one worker process, 0 ms mock)", n, db, settings)
    print(f"jobs by status: {counts}")
    rows = []
    fed = f"fed {BATCH} at a time"
    if half is not None and full is not None:
        growth = full.rss_kib - half.rss_kib
        rows += [
            c.measured(
                f"soak: worker RSS after {half.mark:,} jobs", half.rss_kib / 1024, "MiB", SCRIPT
            ),
            c.measured(
                f"soak: worker RSS after {full.mark:,} jobs", full.rss_kib / 1024, "MiB", SCRIPT
            ),
            c.measured(
                f"soak: RSS growth {half.mark:,} → {full.mark:,} jobs",
                growth / 1024,
                "MiB",
                SCRIPT,
                note=f"{100 * growth / half.rss_kib:+.1f} %",
            ),
        ]
    rows.append(
        c.measured(
            f"soak: throughput over {n:,} jobs, one worker process (0 ms mock, {fed})",
            rate,
            "jobs/s",
            SCRIPT,
            digits=0,
        )
    )
    c.print_rows(rows)
    print(f"supporting: the series (RSS of pid {worker.pid}, VmRSS; sampled every {every} jobs)")
    print_series(samples)
    cpu = samples[-1].cpu_s - samples[0].cpu_s
    c.print_table(
        [
            ("RSS when listening (0 jobs)", c.mib(samples[0].rss_kib)),
            ("peak RSS (VmHWM) over the run", c.mib(hwm)),
            ("first claim -> last done", f"{span:.1f} s"),
            ("worker CPU per job (user+sys)", c.ms(cpu / max(1, samples[-1].done))),
        ]
    )


if __name__ == "__main__":
    p = c.parser(__doc__.splitlines()[0], default_n=10_000)
    p.add_argument("--every", type=int, default=500, help="sample RSS every N jobs (500)")
    args = p.parse_args()
    trio.run(main, args.n, args.size, args.every)
