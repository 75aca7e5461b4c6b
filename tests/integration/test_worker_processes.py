from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest
import trio

from imagen_actors.core import events as ev
from imagen_actors.db.gateway import Gateway
from tests.support.jobs import assert_replay_matches, insert_job
from tests.support.worker import make_config, wait_all_terminal, worker_process

pytestmark = pytest.mark.db


async def wait_started(gw: Gateway, job: object, timeout: float = 20) -> None:
    with trio.fail_after(timeout):
        while not any(isinstance(e, ev.GenerationStarted) for e in await gw.load_events(job)):  # type: ignore[arg-type]
            await trio.sleep(0.05)


async def test_kill_9_mid_job_second_worker_completes_once(
    database_url: str, tmp_path: Path
) -> None:
    """kill -9 mid-generation: after the lease expires another worker completes it, one image."""
    slow = {"mock": {"type": "mock", "latency_ms": 20000}}
    make_config(tmp_path, database_url, name="a", lease_s=5, backends=slow)
    fast = make_config(tmp_path, database_url, name="b", lease_s=5)
    async with Gateway.open(database_url) as gw:
        victim = worker_process(tmp_path / "imagen-a.yaml", name="host-a:a")
        try:
            job = await insert_job(gw, "survives a crash")
            await wait_started(gw, job)
        finally:
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
        rescuer = worker_process(Path(fast.source), name="host-b:b")
        try:
            await wait_all_terminal(gw, timeout=40)
        finally:
            rescuer.send_signal(signal.SIGTERM)
            rescuer.wait(timeout=30)
        row = await gw.fetchrow("load_job", job)
        assert row is not None and row["status"] == "done" and row["attempts"] == 2
        assert row["worker_id"] == "host-b:b"
        images = await gw.fetch_sql("SELECT * FROM imagen.images WHERE job_id = $1", job)
        assert len(images) == 1
        types = [type(e).__name__ for e in await gw.load_events(job)]
        assert "JobRequeued" in types
        await assert_replay_matches(gw, job)


async def test_two_worker_processes_do_each_job_exactly_once(
    database_url: str, tmp_path: Path
) -> None:
    """Two processes over 200 jobs: every job done once, one image each, both workers busy."""
    make_config(tmp_path, database_url, name="a")
    make_config(tmp_path, database_url, name="b")
    async with Gateway.open(database_url) as gw:
        procs = [
            worker_process(tmp_path / "imagen-a.yaml", name="host-a:a"),
            worker_process(tmp_path / "imagen-b.yaml", name="host-b:b"),
        ]
        try:
            await gw.execute_sql(
                "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
                "SELECT gen_random_uuid(), 'job ' || i, 'mock', 64, 64 "
                "FROM generate_series(1, 200) i"
            )
            await wait_all_terminal(gw, timeout=90)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                assert p.wait(timeout=30) == 0
        rows = await gw.fetch_sql("SELECT status, worker_id, attempts FROM imagen.jobs")
        assert len(rows) == 200 and all(r["status"] == "done" for r in rows)
        assert all(r["attempts"] == 1 for r in rows)
        by_worker = Counter(r["worker_id"] for r in rows)
        assert set(by_worker) == {"host-a:a", "host-b:b"}
        images = await gw.fetch_sql(
            "SELECT job_id, count(*) AS n FROM imagen.images GROUP BY job_id"
        )
        assert len(images) == 200 and all(i["n"] == 1 for i in images)
        claims = await gw.fetch_sql(
            "SELECT count(*) AS n FROM imagen.job_events WHERE type = 'JobClaimed'"
        )
        assert claims[0]["n"] == 200


async def test_sigterm_mid_generation_finishes_then_exits_zero(
    database_url: str, tmp_path: Path
) -> None:
    """SIGTERM while generating: the job completes and the process exits 0."""
    make_config(
        tmp_path, database_url, name="a", backends={"mock": {"type": "mock", "latency_ms": 1500}}
    )
    async with Gateway.open(database_url) as gw:
        proc = worker_process(tmp_path / "imagen-a.yaml", name="host-a:a")
        job = await insert_job(gw)
        await wait_started(gw, job)
        proc.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(lambda: proc.wait(timeout=30)) == 0
        row = await gw.fetchrow("load_job", job)
        assert row is not None and row["status"] == "done"


async def test_second_signal_requeues_in_flight_job(database_url: str, tmp_path: Path) -> None:
    """Two SIGTERMs: the in-flight job is requeued through JobRequeued, exit 0."""
    make_config(
        tmp_path, database_url, name="a", backends={"mock": {"type": "mock", "latency_ms": 30000}}
    )
    async with Gateway.open(database_url) as gw:
        proc = worker_process(tmp_path / "imagen-a.yaml", name="host-a:a")
        job = await insert_job(gw)
        await wait_started(gw, job)
        proc.send_signal(signal.SIGTERM)
        # Two signals sent before the first is handled arrive as one: wait for its log line.
        log = tmp_path / "imagen-a.host-a_a.log"
        with trio.fail_after(30):
            while "signal again to abort" not in log.read_text(errors="replace"):
                await trio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(lambda: proc.wait(timeout=30)) == 0
        row = await gw.fetchrow("load_job", job)
        assert row is not None and (row["status"], row["attempts"]) == ("pending", 0)
        await assert_replay_matches(gw, job)
