"""Hosts with different backends share one queue: each job goes to a worker that has its
backend; a job whose backend no live worker offers fails instead of waiting forever.

Before ``imagen.workers`` any worker claimed any job, so a job for the GPU host's ComfyUI
backend could be claimed by a Replicate-only host and failed as "unknown backend".
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from imagen_actors.db.gateway import Gateway
from tests.support.jobs import assert_replay_matches, insert_job
from tests.support.worker import make_config, running_worker, wait_all_terminal, wait_terminal

pytestmark = pytest.mark.db


async def test_each_job_goes_to_a_worker_that_has_its_backend(
    database_url: str, tmp_path: Path
) -> None:
    for name in ("gpu", "cloud"):
        (tmp_path / name).mkdir()
    gpu = make_config(
        tmp_path / "gpu", database_url, name="gpu", backends={"flux": {"type": "mock"}}
    )
    cloud = make_config(
        tmp_path / "cloud", database_url, name="cloud", backends={"hosted": {"type": "mock"}}
    )
    async with running_worker(gpu) as (_h1, gw), running_worker(cloud):
        jobs = {}
        for i in range(12):
            backend = "flux" if i % 2 else "hosted"
            jobs[await insert_job(gw, f"job {i}", backend=backend)] = backend
        await wait_all_terminal(gw, timeout=60)
        rows = await gw.fetch_sql("SELECT id, status, worker_id, attempts FROM imagen.jobs")
    host = {"flux": "gpu", "hosted": "cloud"}
    assert {row["id"] for row in rows} == set(jobs)  # the loop below checks every job
    for row in rows:
        assert (row["status"], row["attempts"]) == ("done", 1), row
        assert row["worker_id"].endswith(":" + host[jobs[row["id"]]]), row


async def test_a_backend_whose_host_was_seen_recently_waits_then_fails_once_it_is_gone(
    database_url: str, tmp_path: Path
) -> None:
    cfg = make_config(tmp_path, database_url, backend_absent_after_s=60)
    async with Gateway.open(database_url) as gw:
        # The GPU host ran a minute ago and is restarting now.
        await gw.worker_seen("gpu-host:w", ["flux"], starting=True)
        async with running_worker(cfg) as (_handle, worker_gw):
            waiting = await insert_job(worker_gw, "for the gpu host", backend="flux")
            served = await insert_job(worker_gw, "for this host")  # claimed after `waiting`
            assert (await wait_terminal(worker_gw, served))["status"] == "done"
            row = await worker_gw.fetchrow("load_job", waiting)
            assert row is not None and (row["status"], row["attempts"]) == ("pending", 0)

            # Ten minutes without a heartbeat: nobody offers flux any more.
            await gw.execute_sql(
                "UPDATE imagen.workers SET last_seen_at = now() - interval '10 minutes' "
                "WHERE worker_id = 'gpu-host:w'"
            )
            await insert_job(worker_gw, "a wake-up")  # NOTIFY: the claimer looks again
            row = await wait_terminal(worker_gw, waiting)
            assert (row["status"], row["attempts"]) == ("failed", 1)
            assert "unknown backend 'flux'" in row["error"]
            await assert_replay_matches(worker_gw, waiting)


async def test_a_worker_registers_its_backends_and_heartbeats(
    database_url: str, tmp_path: Path
) -> None:
    cfg = make_config(
        tmp_path, database_url, backends={"mock": {"type": "mock"}, "b2": {"type": "mock"}}
    )
    async with running_worker(cfg) as (handle, gw):
        first = await gw.fetch_sql("SELECT * FROM imagen.workers")
        assert [(r["worker_id"], r["backends"]) for r in first] == [
            (handle.worker_id, ["b2", "mock"])
        ]
        with trio.fail_after(10):  # reap_interval_s is 0.5 s in tests
            while True:
                (now,) = await gw.fetch_sql("SELECT * FROM imagen.workers")
                if now["last_seen_at"] > first[0]["last_seen_at"]:
                    break
                await trio.sleep(0.1)
        assert now["started_at"] == first[0]["started_at"]
