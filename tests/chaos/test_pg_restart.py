"""Restart the worker's Postgres (its own embedded cluster) while jobs are in flight.

The worker process must ride through every outage by itself: no restart of the worker, no
escalation, every job done or failed, and a clean SIGTERM exit afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from imagen_actors.db.gateway import Gateway
from imagen_actors.db.migrations import migrate
from tests.chaos.campaign import (
    FULL,
    Worker,
    context,
    count_terminal,
    insert_jobs,
    rng,
    wait_settled,
)
from tests.chaos.invariants import check_invariants, local_objects
from tests.chaos.pg_restart import RestartableCluster
from tests.support.worker import make_config

pytestmark = pytest.mark.chaos

JOBS, RESTARTS = (600, 5) if FULL else (300, 2)


async def test_postgres_restarts_mid_run_and_the_worker_rides_through(
    cluster: RestartableCluster, tmp_path: Path
) -> None:
    r, ctx = rng("pg-restart"), context("pg-restart")
    dsn = await trio.to_thread.run_sync(cluster.new_database)
    cfg = make_config(
        tmp_path,
        dsn,
        name="pg",
        lease_s=5,
        backends={"mock": {"type": "mock", "latency_ms": 25}},
    )
    async with Gateway.open(dsn) as gw:
        await migrate(gw)
        await insert_jobs(gw, JOBS, r=r)
    worker = Worker.spawn(Path(cfg.source), "chaos:pg")
    await worker.wait_listening()
    plan: list[str] = []
    for n in range(RESTARTS):
        # Draw both numbers up front so the seed fixes the whole plan.
        delay, outage = r.uniform(0.5, 2.0), r.uniform(0.2, 3.0)
        await trio.sleep(delay)
        async with Gateway.open(dsn) as gw:
            settled = await count_terminal(gw)
            running = await gw.fetch_sql("SELECT id FROM imagen.jobs WHERE status = 'running'")
        await trio.to_thread.run_sync(cluster.stop)
        await trio.sleep(outage)
        await trio.to_thread.run_sync(cluster.start)
        plan.append(
            f"{n}: +{delay:.2f}s, {settled} settled, {len(running)} running, down {outage:.2f}s"
        )
        assert worker.proc.poll() is None, (
            f"{ctx}: the worker exited {worker.proc.returncode} during outage {n}\n"
            f"{worker.log_tail()}"
        )
    print("restart plan:\n  " + "\n  ".join(plan))
    async with Gateway.open(dsn) as gw:
        try:
            await wait_settled(gw, 120 if FULL else 60, ctx)
            assert worker.proc.poll() is None, (
                f"{ctx}: the worker exited {worker.proc.returncode}\n{worker.log_tail()}"
            )
        finally:
            status = await worker.stop()
        assert status == 0, f"{ctx}: the worker exited {status} on SIGTERM\n{worker.log_tail()}"
        objects = local_objects(tmp_path / "objects", "imagen-generated")
        summary = await check_invariants(gw, dsn, objects, jobs=JOBS, context=ctx)
    print(f"{ctx}\ndone {summary.done}, failed {summary.failed}")
