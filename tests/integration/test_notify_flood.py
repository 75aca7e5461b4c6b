from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.support.jobs import insert_job
from tests.support.roles import run_as
from tests.support.worker import make_config, running_worker, wait_terminal

pytestmark = pytest.mark.db

FLOOD = 400_000


async def flood(dsn: str, n: int) -> None:
    """``n`` distinct notifications on imagen_jobs from ``anon``, which needs no privilege."""
    sql = "SELECT count(pg_notify('imagen_jobs', g::text)) AS n FROM generate_series(1, $1::int) g"
    await trio.to_thread.run_sync(run_as, dsn, None, "anon", sql, n)


async def test_a_notify_flood_does_not_stall_the_worker(tmp_path: Path, database_url: str) -> None:
    """400k notifications from anon cost the worker O(1) each: a job running through the
    flood keeps its lease (renewed every 2 s) and a job inserted behind it is done soon."""
    cfg = make_config(
        tmp_path,
        database_url,
        lease_s=6,
        poll_interval_s=1,
        backends={"mock": {"type": "mock", "latency_ms": 4000}},
    )
    async with running_worker(cfg) as (_handle, gw):
        slow = await insert_job(gw, "running through the flood")
        await flood(database_url, FLOOD)
        after = await insert_job(gw, "after the flood")
        for job in (slow, after):
            row = await wait_terminal(gw, job, timeout=40)
            assert row["status"] == "done", row["error"]
        requeued = await gw.fetch_sql(
            "SELECT count(*) AS n FROM imagen.job_events WHERE type = 'JobRequeued'"
        )
        assert requeued[0]["n"] == 0
