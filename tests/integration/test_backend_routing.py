"""Hosts with different backends share one queue: each job goes to a worker that has its
backend; a job whose backend no live worker offers waits worker.unserved_backend_grace_s
(shown by ``status``) for a host that offers it, then fails instead of waiting forever.

Before ``imagen.workers`` any worker claimed any job, so a job for the GPU host's ComfyUI
backend could be claimed by a Replicate-only host and failed as "unknown backend". Before
the grace, a job whose host had simply not started yet (a first deploy, a new backend) was
failed at its first claim.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

from imagen_actors.core import decisions as dc
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
    cfg = make_config(tmp_path, database_url, backend_absent_after_s=60, unserved_backend_grace_s=0)
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
            assert row["error"].startswith("no worker has offered backend 'flux' for 0 s")
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


UNSERVED_REASON = (
    "no worker has offered backend 'gpu' for 0 s (worker.unserved_backend_grace_s); add it "
    "under backends: on a worker host, or fix the job's backend"
)


async def status_output(cfg_path: Path) -> str:
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "imagen_actors", "status", "--config", str(cfg_path)],
            env=dict(os.environ),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    return str(done.stdout.decode())


async def test_a_job_for_a_backend_no_worker_offers_yet_waits_the_grace_then_fails(
    database_url: str, tmp_path: Path
) -> None:
    """A first deploy: the GPU host has not started. Within the grace its job stays pending
    (and status says why) while this host's jobs run; once a job has waited the grace
    (0 s here, instead of waiting out 3600 s) it is failed with the reason."""
    patient = make_config(tmp_path, database_url, name="patient", unserved_backend_grace_s=3600)
    async with running_worker(patient) as (_h, gw):
        waiting = await insert_job(gw, "for the gpu host", backend="gpu")
        served = await insert_job(gw, "for this host")  # claimed after `waiting` was passed
        assert (await wait_terminal(gw, served))["status"] == "done"
        row = await gw.fetchrow("load_job", waiting)
        assert row is not None and (row["status"], row["attempts"]) == ("pending", 0)
        shown = await status_output(tmp_path / "imagen-patient.yaml")
    assert "no worker offers backend 'gpu' yet: 1 pending" in shown
    assert "they fail after 3600 s (worker.unserved_backend_grace_s)" in shown

    strict = make_config(tmp_path, database_url, name="strict", unserved_backend_grace_s=0)
    async with running_worker(strict) as (_h, gw):
        row = await wait_terminal(gw, waiting)
        assert (row["status"], row["error"]) == ("failed", UNSERVED_REASON)
        await assert_replay_matches(gw, waiting)
        events = await gw.fetch_sql(
            "SELECT type, data->>'error_class' AS error_class FROM imagen.job_events "
            "WHERE job_id = $1 ORDER BY seq",
            waiting,
        )
    # Failed in its claim's transaction: it never reached the Executor.
    assert [(e["type"], e["error_class"]) for e in events] == [
        ("JobSubmitted", None),
        ("JobClaimed", None),
        ("JobFailed", "permanent"),
    ]
    assert "no worker offers backend" not in await status_output(tmp_path / "imagen-strict.yaml")


async def test_a_claim_fails_the_unserved_jobs_past_their_grace_and_claims_the_next(
    gateway: Gateway,
) -> None:
    """At the gateway: within the grace the unserved job is passed over; past it, one call
    fails it and goes on to claim the served job behind it."""
    unserved = await insert_job(gateway, "for nobody", backend="gpu")
    first = await insert_job(gateway, "for us")
    claim = dc.claim("host:w", 30)
    kept = await gateway.claim(claim, backends=["mock"], unserved_grace_s=3600)
    assert kept is not None and kept.state.id == first
    row = await gateway.fetchrow("load_job", unserved)
    assert row is not None and row["status"] == "pending"

    second = await insert_job(gateway, "for us too")
    claimed = await gateway.claim(claim, backends=["mock"], unserved_grace_s=0, unserved_every_s=0)
    assert claimed is not None and claimed.state.id == second
    assert claimed.state.status == "running"
    row = await gateway.fetchrow("load_job", unserved)
    assert row is not None and (row["status"], row["error"]) == ("failed", UNSERVED_REASON)
    assert await gateway.claim(claim, backends=["mock"], unserved_grace_s=0) is None


async def test_unserved_backends_are_looked_at_on_a_rarer_path(gateway: Gateway) -> None:
    """The claim of this worker's backends never reads another backend's rows; the jobs of
    backends nobody offers are looked at once per unserved_every_s, whatever the claims
    between."""
    unserved = await insert_job(gateway, "for nobody", backend="gpu")
    claim = dc.claim("host:w", 30)
    assert await gateway.claim(claim, backends=["mock"], unserved_grace_s=3600) is None
    ours = await insert_job(gateway, "for us")
    # Past the grace now, but the unserved path ran a moment ago: only our job is claimed.
    claimed = await gateway.claim(claim, backends=["mock"], unserved_grace_s=0)
    assert claimed is not None and claimed.state.id == ours
    assert await gateway.claim(claim, backends=["mock"], unserved_grace_s=0) is None
    row = await gateway.fetchrow("load_job", unserved)
    assert row is not None and row["status"] == "pending"
    # Once it is due again, the claim fails it.
    assert (
        await gateway.claim(claim, backends=["mock"], unserved_grace_s=0, unserved_every_s=0)
        is None
    )
    row = await gateway.fetchrow("load_job", unserved)
    assert row is not None and (row["status"], row["error"]) == ("failed", UNSERVED_REASON)


async def test_a_claim_takes_the_oldest_head_across_its_backends(gateway: Gateway) -> None:
    """Several backends: the oldest claimable job of any of them, a backed-off head passed
    over; another backend's older jobs are not touched."""
    foreign = await insert_job(gateway, "another host's", backend="gpu")
    a1 = await insert_job(gateway, "a 1", backend="alpha")
    b1 = await insert_job(gateway, "b 1", backend="beta")
    a2 = await insert_job(gateway, "a 2", backend="alpha")
    await gateway.worker_seen("gpu-host:w", ["gpu"])
    claim = dc.claim("host:w", 30)
    order = []
    while (t := await gateway.claim(claim, backends=["beta", "alpha"])) is not None:
        order.append(t.state.id)
    assert order == [a1, b1, a2]
    row = await gateway.fetchrow("load_job", foreign)
    assert row is not None and row["status"] == "pending"
    # Without backends (any backend): the foreign job too.
    t = await gateway.claim(claim)
    assert t is not None and t.state.id == foreign
