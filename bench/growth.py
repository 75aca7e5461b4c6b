"""Growth: the same figures on an empty database and on a big history, in one run.

First every figure is measured on the freshly migrated database (its only jobs are the ones
the measurements themselves run). Then a history is bulk-loaded with SQL: --done jobs
(default 1,000,000) done over the last --days days, each a clone of one job a real worker
ran in the empty phase (its 8 events, times shifted, every hash recomputed in SQL so the
chain of schema 0009 holds and `replay --verify` passes), inserted with the tables'
triggers disabled and re-enabled after (the status counters are then rebuilt); plus
--foreign pending jobs (default 100,000) for another host's backend `gpu`, whose worker is
alive (`imagen.workers`), inserted through the normal triggers. Then everything again:

  claim statement       EXPLAIN ANALYZE execution time (median of 15, rolled back) of
                        claim_next_and_load_events for backend `mock` with nothing of ours
                        pending: the empty re-claim after every job; plus the rarer
                        unserved-backends path as a supporting figure
  pickup / INSERT->done p50 of --pickup jobs one at a time on an idle in-process worker
                        (as bench/pickup.py)
  throughput            --backlog jobs inserted at once, one worker, 0 ms mock: jobs/s from
                        their first JobClaimed to their last finished_at
  next_run_after, status counts, latest failures, audit stuck: EXPLAIN ANALYZE execution
                        time (median of 15)
  audit latency (7 d)   wall time of the `audit_latency` block with --since 7 days, as the
                        CLI runs it (median of 3)
  replay --verify --all jobs/s of ``verify_all`` in-process over every job, once

--quick (50,000 + 10,000) is the size bench/all.py --quick runs.

    .venv/bin/python bench/growth.py [--done 1000000] [--foreign 100000] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
import pickup

from imagen_actors.cli.replay_verify import verify_all
from imagen_actors.config import settings as config
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.sql import query

SCRIPT = Path(__file__).name
REPEATS = 15
FOREIGN = "gpu"
EVENT_COLUMNS = "job_id, seq, type, data, actor, worker_id, occurred_at, hash"
JOB_COLUMNS = (
    "id, owner_user_id, prompt, backend, width, height, style, negative_prompt, seed, steps, "
    "opts, status, image_id, error, attempts, max_attempts, worker_id, lease_expires_at, "
    "created_at, updated_at, started_at, finished_at, version, run_after"
)


# ---- measuring -----------------------------------------------------------------------


def plan_indexes(plan: Any) -> list[str]:
    """Every index an EXPLAIN (FORMAT JSON) plan reads, in plan order."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "Index Name" in node:
                found.append(node["Index Name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(plan)
    return found


async def explain_ms(gw: Gateway, name: str, *args: Any) -> tuple[float, list[str]]:
    """Median execution time (ms) of a named block under EXPLAIN ANALYZE, each run rolled
    back (a claim locks its row), and the indexes its plan reads."""
    sql = "EXPLAIN (ANALYZE, FORMAT JSON) " + query(name)

    async def body() -> tuple[float, list[str]]:
        times = []
        plan: Any = None
        async with gw._pool.acquire() as conn:
            for _ in range(REPEATS):
                tr = conn.transaction()
                await tr.start()
                try:
                    plan = await conn.fetchval(sql, *args)
                finally:
                    await tr.rollback()
                times.append(plan[0]["Execution Time"])
        return statistics.median(times), sorted(set(plan_indexes(plan)))

    result: tuple[float, list[str]] = await gw._run(body)
    return result


async def wall_s(gw: Gateway, name: str, *args: Any, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        await gw.fetch(name, *args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def pickups(gw: Gateway, cfg: config.Config, n: int) -> tuple[float, float]:
    """(pickup p50, INSERT -> done p50) in seconds over n jobs, one at a time."""
    ids = []
    async with c.running_worker(cfg):
        for i in range(3):
            await pickup.wait_settled(gw, await pickup.insert_job(gw, 64, f"warm-up {i}"))
        for i in range(n):
            job_id = await pickup.insert_job(gw, 64, f"growth pickup {i}")
            ids.append(job_id)
            await pickup.wait_settled(gw, job_id)
            await trio.sleep(pickup.IDLE_GAP_S)
    rows = await gw.fetch_sql(
        "SELECT extract(epoch FROM e.occurred_at - j.created_at)::float8 AS pickup,"
        " extract(epoch FROM j.finished_at - j.created_at)::float8 AS done"
        " FROM imagen.jobs j JOIN imagen.job_events e ON e.job_id = j.id AND e.type = 'JobClaimed'"
        " WHERE j.id = ANY($1::uuid[]) AND j.status = 'done'",
        ids,
    )
    return (
        c.percentile([r["pickup"] for r in rows], 50),
        c.percentile([r["done"] for r in rows], 50),
    )


async def throughput(gw: Gateway, cfg: config.Config, n: int) -> float:
    """jobs/s of one worker over a backlog of n jobs (only those jobs counted)."""
    mark = (await gw.fetch_sql("SELECT now() AS t"))[0]["t"]
    await c.insert_backlog(gw, n, 64, first=1_000_000_000)
    async with c.running_worker(cfg):
        with trio.fail_after(n / 2 + 120):
            while True:
                left = await gw.fetch_sql(
                    "SELECT count(*) AS n FROM imagen.jobs WHERE backend = 'mock'"
                    " AND status IN ('pending', 'running')"
                )
                if left[0]["n"] == 0:
                    break
                await trio.sleep(0.25)
    row = (
        await gw.fetch_sql(
            "SELECT count(*) FILTER (WHERE j.status = 'done') AS done,"
            " min(e.occurred_at) AS first_claim, max(j.finished_at) AS last_done"
            " FROM imagen.jobs j JOIN imagen.job_events e"
            "   ON e.job_id = j.id AND e.type = 'JobClaimed' AND e.seq = 2"
            " WHERE j.created_at >= $1 AND j.prompt LIKE 'bench job %'",
            mark,
        )
    )[0]
    span: float = (row["last_done"] - row["first_claim"]).total_seconds()
    return float(row["done"]) / span


async def replay_rate(gw: Gateway) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    summary = await verify_all(gw)
    return summary.checked / (time.perf_counter() - t0), summary.checked, summary.mismatched


async def measure(gw: Gateway, cfg: config.Config, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of the table on the database as it is now."""
    await gw.worker_seen("gpu-host:w", [FOREIGN])
    f: dict[str, Any] = {}
    f["claim"] = await explain_ms(gw, "claim_next_and_load_events", ["mock"])
    f["unserved"] = await explain_ms(gw, "claim_unserved_and_load_events", ["mock"], 600.0, 600.0)
    f["next_run_after"] = await explain_ms(gw, "next_run_after")
    f["status_counts"] = await explain_ms(gw, "status_counts")
    f["latest_failures"] = await explain_ms(gw, "latest_failures", 5)
    f["unserved_backends"] = await explain_ms(gw, "unserved_backends", 600.0)
    f["stuck"] = await explain_ms(gw, "audit_stuck", 600.0, 100)
    week = datetime.now(UTC) - timedelta(days=7)
    f["latency_7d"] = await wall_s(gw, "audit_latency", week, None)
    f["pickup"], f["insert_done"] = await pickups(gw, cfg, args.pickup)
    await gw.worker_seen("gpu-host:w", [FOREIGN])
    f["throughput"] = await throughput(gw, cfg, args.backlog)
    f["replay"] = await replay_rate(gw)
    return f


# ---- the bulk load -------------------------------------------------------------------


def bulk_sql(template: uuid.UUID, done: int, days: float, *, own_images: bool = False) -> list[str]:
    """Statements (one session) that clone ``template`` ``done`` times into the history.

    With ``own_images`` each clone gets its own imagen.images row (id and key of its own, in
    its events too), as a real history has: bench/archive.py moves them out."""
    span_s = days * 86400.0
    steps = [
        "SET work_mem = '256MB'",
        "SET maintenance_work_mem = '512MB'",
        f"CREATE TEMP TABLE tpl_job AS SELECT * FROM imagen.jobs WHERE id = '{template}'",
        "CREATE TEMP TABLE tpl AS SELECT e.seq, e.type, e.data, e.actor, e.worker_id,"
        " e.occurred_at - j.created_at AS off FROM imagen.job_events e, tpl_job j"
        " WHERE e.job_id = j.id",
        # Evenly over the last `days`, ending an hour ago; g orders them by time.
        "CREATE TEMP TABLE bulk AS SELECT g, gen_random_uuid() AS id, gen_random_uuid() AS img,"
        f" now() - interval '1 hour' - make_interval(secs => {span_s} * ({done} - g) / {done})"
        " - (SELECT created_at FROM tpl_job) AS d"
        f" FROM generate_series(1, {done}) g",
        "ALTER TABLE imagen.jobs DISABLE TRIGGER ALL",
        "ALTER TABLE imagen.job_events DISABLE TRIGGER ALL",
        f"INSERT INTO imagen.jobs ({JOB_COLUMNS})"
        " SELECT b.id, t.owner_user_id, t.prompt, t.backend, t.width, t.height, t.style,"
        " t.negative_prompt, t.seed, t.steps, t.opts, t.status,"
        + (" b.img," if own_images else " t.image_id,")
        + " t.error,"
        " t.attempts, t.max_attempts, t.worker_id, t.lease_expires_at + b.d,"
        " t.created_at + b.d, t.updated_at + b.d, t.started_at + b.d, t.finished_at + b.d,"
        " t.version, t.run_after + b.d FROM bulk b CROSS JOIN tpl_job t ORDER BY b.g",
    ]
    # The chain, one seq at a time: each event's hash links to the previous one's.
    seqs = "(SELECT array_agg(seq ORDER BY seq) FROM tpl)"
    steps.append(
        "CREATE TEMP TABLE chain AS SELECT b.g, b.id AS job_id, b.img, b.d,"
        " NULL::bytea AS hash, 0 AS seq FROM bulk b"
    )
    steps.append(
        "CREATE TEMP TABLE evs (job_id uuid, seq int, type text, data jsonb, actor text,"
        " worker_id text, occurred_at timestamptz, hash bytea, g int)"
    )
    steps.append(
        "DO $$ DECLARE k int; BEGIN FOREACH k IN ARRAY " + seqs + " LOOP"
        " CREATE TEMP TABLE step AS"
        "  SELECT c.g, c.job_id, c.img, c.d, t.seq, t.type, x.data, t.actor, t.worker_id,"
        "   (SELECT created_at FROM tpl_job) + c.d + t.off AS occurred_at,"
        "   imagen.job_event_hash(c.hash, c.job_id, t.seq, t.type, t.actor, t.worker_id,"
        "    (SELECT created_at FROM tpl_job) + c.d + t.off, x.data) AS hash"
        "  FROM chain c JOIN tpl t ON t.seq = k"
        "  CROSS JOIN LATERAL (SELECT CASE WHEN t.data ? 'lease_expires_at' THEN"
        "   jsonb_set(t.data, '{lease_expires_at}',"
        "    to_jsonb((t.data ->> 'lease_expires_at')::timestamptz + c.d))"
        "   ELSE t.data END AS data) x0"
        + (
            "  CROSS JOIN LATERAL (SELECT CASE WHEN x0.data ? 'image_id' THEN"
            "   jsonb_set(x0.data, '{image_id}', to_jsonb(c.img)) ELSE x0.data END AS data) x1"
            "  CROSS JOIN LATERAL (SELECT CASE WHEN x1.data ? 'storage_path' THEN"
            "   jsonb_set(x1.data, '{storage_path}', to_jsonb('bench/' || c.job_id || '.png'))"
            "   ELSE x1.data END AS data) x;"
            if own_images
            else "  CROSS JOIN LATERAL (SELECT x0.data) x;"
        )
        + " INSERT INTO evs (job_id, seq, type, data, actor, worker_id, occurred_at, hash, g)"
        "  SELECT job_id, seq, type, data, actor, worker_id, occurred_at, hash, g FROM step;"
        " DROP TABLE chain;"
        " CREATE TEMP TABLE chain AS SELECT g, job_id, img, d, hash, seq FROM step;"
        " DROP TABLE step;"
        " END LOOP; END $$"
    )
    steps.append(
        f"INSERT INTO imagen.job_events ({EVENT_COLUMNS})"
        f" SELECT {EVENT_COLUMNS} FROM evs ORDER BY g, seq"
    )
    if own_images:
        steps.append(
            "INSERT INTO imagen.images (id, owner_user_id, job_id, prompt, backend, model, seed,"
            " width, height, bucket, storage_path, mime, bytes, sha256, metadata, created_at)"
            " SELECT b.img, i.owner_user_id, b.id, i.prompt, i.backend, i.model, i.seed,"
            " i.width, i.height, i.bucket, 'bench/' || b.id || '.png', i.mime, i.bytes,"
            " i.sha256, i.metadata, i.created_at + b.d"
            f" FROM bulk b CROSS JOIN imagen.images i WHERE i.job_id = '{template}'"
        )
    steps += [
        "ALTER TABLE imagen.jobs ENABLE TRIGGER ALL",
        "ALTER TABLE imagen.job_events ENABLE TRIGGER ALL",
        "SELECT imagen.job_status_counts_rebuild()",
        "SELECT imagen.job_stage_times_rebuild()",
    ]
    return steps


async def load_history(
    dsn: str, template: uuid.UUID, done: int, foreign: int, days: float
) -> dict[str, float]:
    """Seconds per part of the load."""
    parts: dict[str, float] = {}
    async with Gateway.open(
        dsn, application_name="imagen-bench-load", pool_size=1, statement_timeout_ms=0
    ) as gw:
        t0 = time.perf_counter()
        for sql in bulk_sql(template, done, days):
            await gw.execute_sql(sql)
        parts["history (SQL clone, triggers off)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # Another live host's backlog, through the normal INSERT path (triggers on), over
        # the last day: older than anything this host is given.
        await gw.execute_sql(
            "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height, created_at)"
            " SELECT $1, 'foreign job ' || g, $2, 512, 512,"
            " now() - interval '1 day' + make_interval(secs => 3600.0 * 23 * g / $3)"
            " FROM generate_series(1, $3::int) g",
            c.OWNER,
            FOREIGN,
            foreign,
        )
        parts["foreign pending (normal INSERT)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await gw.execute_sql("VACUUM ANALYZE imagen.jobs")
        await gw.execute_sql("VACUUM ANALYZE imagen.job_events")
        parts["VACUUM ANALYZE"] = time.perf_counter() - t0
    return parts


# ---- the table -----------------------------------------------------------------------


def pair(a: float, b: float, unit: str, digits: int = 2) -> str:
    return f"{a:,.{digits}f} / {b:,.{digits}f} {unit}"


def rows(e: dict[str, Any], b: dict[str, Any], size: str) -> list[c.Row]:
    def row(figure: str, value: str, target: str = c.NONE, met: bool | None = None) -> c.Row:
        return c.Row(
            f"growth: {figure} (empty / {size})",
            value,
            SCRIPT,
            target,
            c.NONE if met is None else ("yes" if met else "no"),
        )

    claim_b = round(b["claim"][0], 2)
    pickup_ratio = b["pickup"] / e["pickup"]
    status_b = max(b["status_counts"][0], b["latest_failures"][0], b["unserved_backends"][0])
    return [
        row("claim statement", pair(e["claim"][0], b["claim"][0], "ms"), "≤ 2 ms", claim_b <= 2),
        row(
            "pickup p50 / INSERT → done p50",
            f"{e['pickup'] * 1000:.1f} / {e['insert_done'] * 1000:.1f} ms → "
            f"{b['pickup'] * 1000:.1f} / {b['insert_done'] * 1000:.1f} ms "
            f"(pickup ×{pickup_ratio:.2f})",
            "pickup ≤ 1.5× empty",
            round(pickup_ratio, 2) <= 1.5,
        ),
        row(
            "one worker's throughput (0 ms mock)",
            pair(e["throughput"], b["throughput"], "jobs/s", 0),
        ),
        row("next_run_after", pair(e["next_run_after"][0], b["next_run_after"][0], "ms", 3)),
        row(
            "status counts / latest failures / unserved backends",
            f"{e['status_counts'][0]:.3f} / {e['latest_failures'][0]:.3f} / "
            f"{e['unserved_backends'][0]:.3f} ms → {b['status_counts'][0]:.3f} / "
            f"{b['latest_failures'][0]:.3f} / {b['unserved_backends'][0]:.3f} ms",
            "status ≤ 0.5 s",
            status_b <= 500,
        ),
        row(
            "audit latency --since 7d (wall)",
            pair(e["latency_7d"], b["latency_7d"], "s", 3),
            "≤ 2 s",
            round(b["latency_7d"], 3) <= 2,
        ),
        row("audit stuck (100 listed)", pair(e["stuck"][0], b["stuck"][0], "ms")),
        row(
            "replay --verify --all",
            f"{e['replay'][0]:,.0f} jobs/s ({e['replay'][1]:,} jobs) / "
            f"{b['replay'][0]:,.0f} jobs/s ({b['replay'][1]:,} jobs)",
            "≥ 20,000 jobs/s",
            round(b["replay"][0]) >= 20_000,
        ),
    ]


async def main(args: argparse.Namespace) -> None:
    run = c.Run()
    size = f"{args.done:,} done + {args.foreign:,} foreign pending"
    with c.temp_dir("imagen-bench-growth-") as tmp, c.private_database(tmp) as (dsn, db):
        async with c.client(dsn) as gw:
            settings = await c.pg_settings(gw)
            cfg = c.bench_config(tmp, dsn, latency_ms=0, poll_interval_s=3600)
            empty = await measure(gw, cfg, args)
            template = (
                await gw.fetch_sql(
                    "SELECT j.id FROM imagen.jobs j WHERE j.status = 'done' AND EXISTS"
                    " (SELECT 1 FROM imagen.job_events e WHERE e.job_id = j.id"
                    "  AND e.type = 'UsageRecorded') ORDER BY j.created_at DESC LIMIT 1"
                )
            )[0]["id"]
            t0 = time.perf_counter()
            parts = await load_history(dsn, template, args.done, args.foreign, args.days)
            load_s = time.perf_counter() - t0
            sizes = (
                await gw.fetch_sql(
                    "SELECT (SELECT count(*) FROM imagen.job_events) AS events,"
                    " pg_total_relation_size('imagen.job_events') AS events_bytes,"
                    " pg_total_relation_size('imagen.jobs') AS jobs_bytes"
                )
            )[0]
            big = await measure(gw, cfg, args)
    run.header(f"growth: empty database against {size}", args.done + args.foreign, db, settings)
    print(
        f"history: {sizes['events']:,} events; job_events {sizes['events_bytes'] / 2**30:.2f} GiB"
        f" and jobs {sizes['jobs_bytes'] / 2**30:.2f} GiB with indexes; loaded in {load_s:.0f} s"
        f" ({', '.join(f'{k} {v:.0f} s' for k, v in parts.items())})"
    )
    print(f"replay mismatches: empty {empty['replay'][2]}, big {big['replay'][2]}")
    c.print_rows(rows(empty, big, size))
    print("supporting: the plans (indexes read) and the rarer claim path")
    c.print_table(
        [
            *[
                (f"{name}: indexes read (big)", ", ".join(big[name][1]) or "none")
                for name in (
                    "claim",
                    "unserved",
                    "next_run_after",
                    "latest_failures",
                    "unserved_backends",
                    "stuck",
                )
            ],
            (
                "claim of unserved backends' jobs (every 5 s), empty / big",
                pair(empty["unserved"][0], big["unserved"][0], "ms"),
            ),
        ]
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--done", type=int, default=1_000_000, help="done jobs in the history")
    p.add_argument("--foreign", type=int, default=100_000, help="pending jobs of another host")
    p.add_argument("--days", type=float, default=90.0, help="the history's span (days)")
    p.add_argument("--pickup", type=int, default=50, help="jobs for pickup (one at a time)")
    p.add_argument("--backlog", type=int, default=1000, help="jobs for the throughput")
    p.add_argument("--quick", action="store_true", help="50,000 + 10,000, smaller runs")
    parsed = p.parse_args()
    if parsed.quick:
        parsed.done, parsed.foreign, parsed.pickup, parsed.backlog = 50_000, 10_000, 20, 300
    trio.run(main, parsed)
