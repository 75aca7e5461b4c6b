from __future__ import annotations

from pathlib import Path

import pytest
import trio

from imagen_actors.core import events as ev
from imagen_actors.db.gateway import Gateway
from tests.support.jobs import assert_replay_matches, insert_job
from tests.support.worker import make_config, running_worker, wait_all_terminal, wait_terminal

pytestmark = pytest.mark.db

DONE_SEQUENCE = [
    "JobSubmitted",
    "JobClaimed",
    "GenerationStarted",
    "GenerationSucceeded",
    "LeaseExtended",
    "ImageStored",
    "JobCompleted",
    "UsageRecorded",
]


async def assert_done_job(gw: Gateway, job_id: object, tmp_path: Path) -> None:
    """Image row, stored object, usage row, event sequence and replay == projection. The
    usage row comes with the completion: the job is done only together with it."""
    events = await gw.load_events(job_id)  # type: ignore[arg-type]
    assert [type(e).__name__ for e in events] == DONE_SEQUENCE
    images = await gw.fetch_sql("SELECT * FROM imagen.images WHERE job_id = $1", job_id)
    assert len(images) == 1
    obj = tmp_path / "objects" / images[0]["bucket"] / images[0]["storage_path"]
    assert obj.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    local = Path(images[0]["metadata"]["local_path"])
    assert local.exists() and local.with_suffix(".json").exists()
    usage = await gw.fetch_sql("SELECT * FROM mai.imagen_usage WHERE job_id = $1", job_id)
    assert len(usage) == 1 and len(usage[0]["prompt_hash"]) == 64
    # ImageStored, JobCompleted and UsageRecorded were written by one transaction.
    xmins = await gw.fetch_sql(
        "SELECT DISTINCT xmin::text AS x FROM imagen.job_events WHERE job_id = $1 "
        "AND type IN ('ImageStored', 'JobCompleted', 'UsageRecorded')",
        job_id,
    )
    assert len(xmins) == 1, xmins
    await assert_replay_matches(gw, job_id)  # type: ignore[arg-type]


async def test_job_is_done_with_image_object_usage_and_events(
    database_url: str, tmp_path: Path
) -> None:
    """INSERT -> done: one image row, the object on disk, sidecar, usage, full event log."""
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        job = await insert_job(gw, "a lighthouse at dusk", width=128, height=96)
        row = await wait_terminal(gw, job)
        assert row["status"] == "done" and row["image_id"] is not None
        await assert_done_job(gw, job, tmp_path)


async def test_permanent_failure_fails_once_with_error(database_url: str, tmp_path: Path) -> None:
    """A permanent backend error fails the job on attempt 1 with the error text."""
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        job = await insert_job(gw, "[fail:permanent] owl")
        row = await wait_terminal(gw, job)
        assert (row["status"], row["attempts"]) == ("failed", 1)
        assert "injected permanent failure" in row["error"]
        await assert_replay_matches(gw, job)


async def test_unknown_backend_fails_listing_configured(database_url: str, tmp_path: Path) -> None:
    """A job naming an unconfigured backend fails at once, listing the configured ones."""
    cfg = make_config(
        tmp_path,
        database_url,
        backends={"mock": {"type": "mock"}, "mock-slow": {"type": "mock", "latency_ms": 10}},
    )
    async with running_worker(cfg) as (_h, gw):
        job = await insert_job(gw, "owl", backend="flux-dev")
        row = await wait_terminal(gw, job)
        assert row["status"] == "failed" and row["attempts"] == 1
        assert row["error"].startswith("no worker has offered backend 'flux-dev' for 0 s")


async def test_transient_failure_is_retried_then_done(database_url: str, tmp_path: Path) -> None:
    """A transient failure requeues with backoff; the second attempt completes the job."""
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        job = await insert_job(gw, "[fail-once] owl")
        row = await wait_terminal(gw, job, timeout=30)
        assert (row["status"], row["attempts"]) == ("done", 2)
        types = [type(e).__name__ for e in await gw.load_events(job)]
        assert types.count("GenerationFailed") == 1 and "JobRequeued" in types
        await assert_replay_matches(gw, job)


async def test_drains_backlog_inserted_before_start(database_url: str, tmp_path: Path) -> None:
    """Jobs queued while no worker ran are all done once one starts (no NOTIFY needed)."""
    async with Gateway.open(database_url) as seed:
        await seed.execute_sql(
            "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
            "SELECT gen_random_uuid(), 'backlog ' || i, 'mock', 64, 64 "
            "FROM generate_series(1, 25) i"
        )
    cfg = make_config(tmp_path, database_url, poll_interval_s=60)
    async with running_worker(cfg) as (_h, gw):
        await wait_all_terminal(gw, timeout=30)
        rows = await gw.fetch_sql("SELECT status, count(*) AS n FROM imagen.jobs GROUP BY 1")
        assert rows == [{"status": "done", "n": 25}]


async def test_notify_wakes_an_idle_worker(database_url: str, tmp_path: Path) -> None:
    """With a 60 s safety poll, a new INSERT is still picked up by NOTIFY: the first job's
    completion shows the start-up drain is over and the worker idle, so the second can only
    be claimed on its notification (well within 30 s) or on the poll (60 s)."""
    cfg = make_config(tmp_path, database_url, poll_interval_s=60)
    async with running_worker(cfg) as (_h, gw):
        first = await insert_job(gw)
        assert (await wait_terminal(gw, first, timeout=30))["status"] == "done"
        job = await insert_job(gw)
        row = await wait_terminal(gw, job, timeout=30)
        assert row["status"] == "done"


async def test_listener_survives_pg_terminate_backend(database_url: str, tmp_path: Path) -> None:
    """Killing the LISTEN connection: the Listener reconnects and NOTIFY works again."""
    cfg = make_config(tmp_path, database_url, poll_interval_s=60)
    async with running_worker(cfg) as (_h, gw):
        listening = (
            "SELECT pid FROM pg_stat_activity "
            "WHERE query ILIKE 'LISTEN%' AND datname = current_database()"
        )
        killed = await gw.fetch_sql(
            f"SELECT pid, pg_terminate_backend(pid) AS ok FROM ({listening}) AS l"
        )
        assert killed and all(k["ok"] for k in killed)
        # Wait for the Listener's new connection (a backend that was not killed) to LISTEN.
        with trio.fail_after(30):
            while not {r["pid"] for r in await gw.fetch_sql(listening)} - {
                k["pid"] for k in killed
            }:
                await trio.sleep(0.05)
        job = await insert_job(gw)
        row = await wait_terminal(gw, job, timeout=30)
        assert row["status"] == "done"


async def test_stop_intake_finishes_the_job_in_flight(database_url: str, tmp_path: Path) -> None:
    """First signal mid-generation: the job still completes, nothing new is claimed."""
    cfg = make_config(
        tmp_path, database_url, backends={"mock": {"type": "mock", "latency_ms": 800}}
    )
    async with running_worker(cfg) as (handle, gw):
        first = await insert_job(gw, "first")
        second = await insert_job(gw, "second")
        await wait_for_event(gw, first, ev.GenerationStarted)
        handle.stop_intake()
        with trio.fail_after(10):
            await handle.pipeline_done.wait()
        assert (await gw.fetchrow("load_job", first))["status"] == "done"  # type: ignore[index]
        assert (await gw.fetchrow("load_job", second))["status"] == "pending"  # type: ignore[index]


async def test_abort_requeues_the_job_in_flight(database_url: str, tmp_path: Path) -> None:
    """Second signal mid-generation: the job goes back to pending through JobRequeued."""
    cfg = make_config(
        tmp_path, database_url, backends={"mock": {"type": "mock", "latency_ms": 5000}}
    )
    async with running_worker(cfg) as (handle, gw):
        job = await insert_job(gw, "slow")
        await wait_for_event(gw, job, ev.GenerationStarted)
        handle.abort()
        with trio.fail_after(10):
            await handle.pipeline_done.wait()
        row = await gw.fetchrow("load_job", job)
        assert row is not None and (row["status"], row["attempts"]) == ("pending", 0)
        last = (await gw.load_events(job))[-1]
        assert isinstance(last, ev.JobRequeued) and last.refund_attempt
        await assert_replay_matches(gw, job)


async def wait_for_event(gw: Gateway, job: object, kind: type[ev.Event]) -> None:
    with trio.fail_after(10):
        while not any(isinstance(e, kind) for e in await gw.load_events(job)):  # type: ignore[arg-type]
            await trio.sleep(0.02)


async def test_notify_with_missing_or_bogus_id_is_harmless(
    database_url: str, tmp_path: Path
) -> None:
    """A NOTIFY naming no real job (or not a UUID) wakes the worker and changes nothing."""
    async with running_worker(make_config(tmp_path, database_url)) as (handle, gw):
        await gw.execute_sql("SELECT pg_notify('imagen_jobs', 'not-a-uuid')")
        await gw.execute_sql(
            "SELECT pg_notify('imagen_jobs', '00000000-0000-4000-8000-000000000000')"
        )
        job = await insert_job(gw)
        row = await wait_terminal(gw, job, timeout=30)
        assert row["status"] == "done" and handle.restarts == {}


async def test_only_one_job_running_while_others_wait(database_url: str, tmp_path: Path) -> None:
    """The Claimer claims only when the GPU slot is free: the rest stay pending."""
    cfg = make_config(
        tmp_path, database_url, backends={"mock": {"type": "mock", "latency_ms": 400}}
    )
    async with running_worker(cfg) as (_h, gw):
        jobs = [await insert_job(gw, f"queued {i}") for i in range(3)]
        await wait_for_event(gw, jobs[0], ev.GenerationStarted)
        counts = {r["status"]: r["n"] for r in await gw.fetch("status_counts")}
        assert counts == {"running": 1, "pending": 2}
        await wait_all_terminal(gw, timeout=20)


async def test_worker_id_is_the_application_name(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IMAGEN_WORKER_NAME names the worker; Postgres sees it as application_name."""
    monkeypatch.setenv("IMAGEN_WORKER_NAME", "gpu-7:main")
    async with running_worker(make_config(tmp_path, database_url)) as (handle, gw):
        assert handle.worker_id == "gpu-7:main"
        names = await gw.fetch_sql(
            "SELECT DISTINCT application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'gpu-7:main'"
        )
        assert names == [{"application_name": "gpu-7:main"}]
        job = await insert_job(gw)
        row = await wait_terminal(gw, job)
        assert row["worker_id"] == "gpu-7:main"


async def test_usage_failure_is_recorded_and_never_fails_the_job(
    database_url: str, tmp_path: Path
) -> None:
    """A failing usage insert leaves the job done with its image and appends UsageFailed."""
    async with Gateway.open(database_url) as admin:
        await admin.execute_sql(
            "CREATE FUNCTION mai.refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'usage table is read-only today'; END $$; "
            "CREATE TRIGGER refuse BEFORE INSERT ON mai.imagen_usage "
            "FOR EACH ROW EXECUTE FUNCTION mai.refuse()"
        )
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        job = await insert_job(gw)
        row = await wait_terminal(gw, job)
        assert row["status"] == "done"
        with trio.fail_after(10):
            while True:
                types = [type(e).__name__ for e in await gw.load_events(job)]
                if types[-1] == "UsageFailed":
                    break
                await trio.sleep(0.02)
        assert len(await gw.fetch_sql("SELECT 1 FROM imagen.images WHERE job_id = $1", job)) == 1
        await assert_replay_matches(gw, job)


async def test_unwritable_output_directory_fails_the_job_not_the_actor(
    database_url: str, tmp_path: Path
) -> None:
    """Disk trouble is a StorageError on the job (retried, then failed), not an actor crash."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the output directory should be")
    cfg = make_config(tmp_path, database_url, max_attempts=1)
    cfg = type(cfg)(
        **{
            **{f: getattr(cfg, f) for f in cfg.__struct_fields__},
            "output": type(cfg.output)(directory=str(blocker)),
        }
    )
    async with running_worker(cfg) as (handle, gw):
        job = await insert_job(gw)
        row = await wait_terminal(gw, job)
        assert row["status"] == "failed"
        assert "could not write to output.directory" in row["error"]
        assert "uploader" not in handle.restarts
        await assert_replay_matches(gw, job)
