"""Focused regressions found by the Postgres-restart scenario: one outage, one actor at a time.

- The Reaper used to crash on every pass while Postgres was down; a few short restarts in a
  row used up the supervisor's restart budget and the worker exited (EscalationError).
- A job whose generation or upload finished while Postgres was down was stranded: the
  Executor or Uploader crashed on the write and the job stayed ``running`` until its lease
  expired, then ran again (attempt counted).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core.records import NewJob
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.migrations import migrate
from tests.chaos.pg_restart import RestartableCluster
from tests.fakes.supabase_storage import SERVICE_KEY, FakeSupabaseStorage, serve_fake_storage
from tests.support.jobs import assert_replay_matches, insert_job
from tests.support.worker import make_config, running_worker, wait_terminal

pytestmark = pytest.mark.chaos

LEASE_S = 30.0  # far longer than any wait below: a job that waits for its lease fails the test


@pytest.fixture(scope="module")
def cluster() -> Iterator[RestartableCluster]:
    if os.environ.get("IMAGEN_TEST_DATABASE_URL"):
        pytest.skip(
            "IMAGEN_TEST_DATABASE_URL is set: these tests restart their Postgres, so they run "
            "only on their own embedded cluster (unset the variable to run them)"
        )
    c = RestartableCluster()
    yield c
    c.close()


@pytest.fixture
async def dsn(cluster: RestartableCluster) -> str:
    url = await trio.to_thread.run_sync(lambda: cluster.new_database(f"t_{uuid.uuid4().hex[:8]}"))
    async with Gateway.open(url) as gw:
        await migrate(gw)
    return url


async def outage(cluster: RestartableCluster, seconds: float) -> None:
    await trio.to_thread.run_sync(cluster.stop)
    await trio.sleep(seconds)
    await trio.to_thread.run_sync(cluster.start)


async def wait_event(gw: Gateway, job: uuid.UUID, kind: type[ev.Event]) -> None:
    with trio.fail_after(20):
        while not any(isinstance(e, kind) for e in await gw.load_events(job)):
            await trio.sleep(0.02)


async def test_reaper_rides_out_an_outage_and_keeps_reaping(
    cluster: RestartableCluster, dsn: str, tmp_path: Path
) -> None:
    """The Reaper is not restarted by the outage and still works after it: a lease that a
    dead host took after the restart, and that expires then, is requeued by the Reaper and
    the job completes here on its second attempt."""
    cfg = make_config(tmp_path, dsn, name="reaper", lease_s=LEASE_S)
    async with running_worker(cfg) as (handle, gw):
        await outage(cluster, 1.5)
        owner = uuid.uuid4()
        stranded = await gw.insert_and_transition(
            NewJob(
                owner_user_id=owner,
                prompt="left by a dead host",
                backend="mock",
                width=64,
                height=64,
            ),
            dc.claim("dead-host:w", 1.0),
        )
        job = stranded.state.id
        row = await wait_terminal(gw, job, timeout=30)
        assert (row["status"], row["attempts"]) == ("done", 2)
        requeued = [e for e in await gw.load_events(job) if isinstance(e, ev.JobRequeued)]
        assert [e.actor for e in requeued] == ["reaper"], requeued
        assert "reaper" not in handle.restarts, handle.restarts
        await assert_replay_matches(gw, job)


async def test_generation_ending_during_an_outage_completes_without_waiting_for_the_lease(
    cluster: RestartableCluster, dsn: str, tmp_path: Path
) -> None:
    slow = {"mock": {"type": "mock", "latency_ms": 1500}}
    cfg = make_config(tmp_path, dsn, name="gen", lease_s=LEASE_S, backends=slow)
    async with running_worker(cfg) as (handle, gw):
        job = await insert_job(gw, "outage at the end of generation")
        await wait_event(gw, job, ev.GenerationStarted)
        await outage(cluster, 2.5)  # the backend returns while the database is down
        row = await wait_terminal(gw, job, timeout=10)
        assert (row["status"], row["attempts"]) == ("done", 1)
        assert "executor" not in handle.restarts, handle.restarts
        await assert_replay_matches(gw, job)


async def test_upload_ending_during_an_outage_completes_without_waiting_for_the_lease(
    cluster: RestartableCluster, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve_fake_storage(FakeSupabaseStorage(reply_delay_s=1.5)) as fake:
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
        storage = {"type": "supabase", "timeout_s": 10.0}
        cfg = make_config(tmp_path, dsn, name="up", lease_s=LEASE_S, storage=storage)
        async with running_worker(cfg) as (handle, gw):
            job = await insert_job(gw, "outage at the end of the upload")
            await wait_event(gw, job, ev.GenerationSucceeded)
            await outage(cluster, 2.5)  # the upload's reply arrives while the database is down
            row = await wait_terminal(gw, job, timeout=10)
            assert (row["status"], row["attempts"]) == ("done", 1)
            assert "uploader" not in handle.restarts, handle.restarts
            await assert_replay_matches(gw, job)
        assert len(fake.objects) == 1
