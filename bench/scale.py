"""Scale-out: 1, 2 and 4 worker processes (like one host each) on one Postgres.

For each worker count: a fresh private database (embedded pgserver cluster, or a fresh
database on $IMAGEN_BENCH_DATABASE_URL), that many real ``python -m imagen_actors worker
--config FILE`` subprocesses, each with its own worker name, mock backend at latency_ms 50
and one shared local object store (the bucket every host uploads to). Once every worker
listens, one INSERT ... SELECT puts N jobs in the queue. Then:

  jobs/s       = done jobs / (last jobs.finished_at - first JobClaimed.occurred_at)
  efficiency   = jobs/s of k workers / (k x jobs/s of 1 worker)
  ideal        = k x 1 / 0.050 s = k x 20 jobs/s, the bound the backend alone sets

and exactly-once is checked: every job done, one JobClaimed and one JobCompleted per job,
no GenerationFailed/JobFailed/JobRequeued, attempts = 1, one imagen.images row per job
linked from the job, and one stored object per job (the files in the store are exactly the
images' storage paths).

The machine's CPU use over each run (/proc/stat, every process, not only ours) and the
workers' own CPU time (/proc/<pid>/stat) are printed too: on 2 cores, 4 worker processes
plus Postgres compete for the CPU, so that row measures the machine as much as the code.

Rows for docs/performance.md: jobs/s for 1, 2 and 4 workers, and the exactly-once check.

    .venv/bin/python bench/scale.py [--n 800] [--workers 1,2,4]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
import _processes as procs

from imagen_actors.db.gateway import Gateway

SCRIPT = Path(__file__).name
LATENCY_MS = 50
IDEAL_PER_WORKER = 1000 / LATENCY_MS  # jobs/s one GPU slot can do with the backend alone

CHECKS = """
SELECT
  (SELECT count(*) FROM imagen.jobs) AS jobs,
  (SELECT count(*) FROM imagen.jobs WHERE status = 'done') AS done,
  (SELECT count(*) FROM imagen.jobs WHERE attempts <> 1) AS attempts_not_1,
  (SELECT count(*) FROM imagen.job_events WHERE type = 'JobClaimed') AS claims,
  (SELECT count(*) FROM imagen.job_events WHERE type = 'JobCompleted') AS completions,
  (SELECT count(*) FROM (SELECT job_id FROM imagen.job_events
     WHERE type IN ('JobClaimed', 'JobCompleted')
     GROUP BY job_id, type HAVING count(*) <> 1) AS x) AS jobs_not_once,
  (SELECT count(*) FROM imagen.job_events
     WHERE type IN ('GenerationFailed', 'JobFailed', 'JobRequeued')) AS failures,
  (SELECT count(*) FROM imagen.images) AS images,
  (SELECT count(*) FROM imagen.jobs j JOIN imagen.images i
     ON i.id = j.image_id AND i.job_id = j.id) AS linked_images
"""


@dataclass
class Result:
    workers: int
    rate: float
    span_s: float
    claims_by_worker: list[int]
    worker_cpu_s: float
    machine_busy: float  # share of all CPUs busy during the run, every process counted
    problems: list[str]


def exactly_once(n: int, row: dict[str, Any], paths: set[Path], objects: set[Path]) -> list[str]:
    """What (if anything) breaks "every job exactly once" in one run."""
    problems = []
    expect = {"jobs": n, "done": n, "claims": n, "completions": n, "images": n}
    expect |= {"linked_images": n, "attempts_not_1": 0, "jobs_not_once": 0, "failures": 0}
    for key, want in expect.items():
        if row[key] != want:
            problems.append(f"{key} = {row[key]}, expected {want}")
    if paths != objects:
        problems.append(
            f"stored objects {len(objects)} vs image rows' paths {len(paths)}: "
            f"{len(objects - paths)} objects without a row, {len(paths - objects)} rows "
            "without an object"
        )
    return problems


async def one_run(k: int, n: int, size: int, tmp: Path, timeout: float) -> tuple[Result, str]:
    with c.private_database(tmp) as (dsn, db):
        async with c.client(dsn) as gw:
            configs = [
                (
                    c.write_config(
                        tmp, dsn, name=f"host{i}", latency_ms=LATENCY_MS, poll_interval_s=5
                    ),
                    f"scale-host-{i}",
                )
                for i in range(1, k + 1)
            ]
            with procs.worker_processes(configs) as workers:
                await procs.wait_listening(workers)
                # Start-up (imports, connecting, migrating) is not per-job work.
                cpu0 = sum(procs.cpu_seconds(w.pid) for w in workers)
                busy0, total0 = procs.machine_busy()
                await c.insert_backlog(gw, n, size)
                await c.wait_all_settled(gw, n, timeout=timeout, label=f"{k} workers")
                busy1, total1 = procs.machine_busy()
                cpu = sum(procs.cpu_seconds(w.pid) for w in workers) - cpu0
            result = await measure(gw, k, n, tmp, cpu, (busy1 - busy0) / (total1 - total0))
    return result, db


async def measure(gw: Gateway, k: int, n: int, tmp: Path, cpu: float, busy: float) -> Result:
    rate, span = await c.done_rate(gw)
    by_worker = await gw.fetch_sql(
        "SELECT worker_id, count(*) AS n FROM imagen.job_events WHERE type = 'JobClaimed'"
        " GROUP BY worker_id ORDER BY worker_id"
    )
    checks = (await gw.fetch_sql(CHECKS))[0]
    images = await gw.fetch_sql("SELECT bucket, storage_path FROM imagen.images")
    root = tmp / "objects"
    paths = {root / r["bucket"] / r["storage_path"] for r in images}
    objects = {p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")}
    return Result(
        workers=k,
        rate=rate,
        span_s=span,
        claims_by_worker=[r["n"] for r in by_worker],
        worker_cpu_s=cpu,
        machine_busy=busy,
        problems=exactly_once(n, checks, paths, objects),
    )


def rows(results: list[Result], n: int) -> list[c.Row]:
    one = next((r.rate for r in results if r.workers == 1), None)
    out = []
    for r in results:
        ideal = r.workers * IDEAL_PER_WORKER
        notes = []
        if one is not None and r.workers > 1:
            speedup = r.rate / one
            notes.append(
                f"×{speedup:.2f} vs 1 worker, {100 * speedup / r.workers:.0f} % efficiency"
            )
        notes.append(f"{100 * r.rate / ideal:.0f} % of ideal {ideal:.0f}")
        label = "1 worker process" if r.workers == 1 else f"{r.workers} worker processes"
        if r.workers > 2:
            label += ", more than the 2 cores"
        figure = f"scale-out: {label} ({LATENCY_MS} ms mock, {n:,} jobs)"
        out.append(c.measured(figure, r.rate, "jobs/s", SCRIPT, note="; ".join(notes)))
    problems = [f"{r.workers} workers: {p}" for r in results for p in r.problems]
    counts = "/".join(str(r.workers) for r in results)
    value = (
        f"yes for {counts} workers: every job done, 1 claim, attempts 1, 1 image row, 1 object"
        if not problems
        else "NO: " + "; ".join(problems)
    )
    out.append(
        c.Row(
            f"scale-out: exactly once ({counts} workers)",
            value,
            SCRIPT,
            "every job exactly once",
            "no" if problems else "yes",
        )
    )
    return out


async def main(n: int, size: int, counts: list[int]) -> None:
    run = c.Run()
    results: list[Result] = []
    db = ""
    for k in counts:
        with c.temp_dir(f"imagen-bench-scale{k}-") as tmp:
            result, db = await one_run(k, n, size, tmp, timeout=n / (k * 5) + 120)
        results.append(result)
        print(f"  [{k} workers] {result.rate:.1f} jobs/s", file=sys.stderr)
    run.header(
        f"scale-out ({', '.join(map(str, counts))} worker processes, {LATENCY_MS} ms mock)",
        n,
        db,
        unit="jobs per worker count",
    )
    c.print_rows(rows(results, n))
    print("supporting (CPU: 2 cores; 'machine busy' counts every process on the machine):")
    support = []
    for r in results:
        w = f"{r.workers} w"
        support += [
            (f"{w}: first claim -> last done", f"{r.span_s:.2f} s"),
            (f"{w}: jobs claimed per worker", " / ".join(map(str, r.claims_by_worker))),
            (f"{w}: worker processes' CPU per job (user+sys)", c.ms(r.worker_cpu_s / n)),
            (f"{w}: machine CPU busy during the run", f"{100 * r.machine_busy:.0f} %"),
        ]
    c.print_table(support)


if __name__ == "__main__":
    p = c.parser(__doc__.splitlines()[0], default_n=800)
    p.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    args = p.parse_args()
    trio.run(main, args.n, args.size, [int(k) for k in args.workers.split(",")])
