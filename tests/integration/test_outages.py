"""Dependencies that go away and come back (issue 14): real loopback fakes, a real worker and
Postgres. Outages last a few seconds; small probe settings (worker.probe_min_s/probe_max_s)
make them equivalent to the minutes a real ComfyUI restart or storage maintenance takes.
Each ends with every job done at attempt 1 and rendered once."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from imagen_actors.cli.commands.status import describe_unhealthy
from imagen_actors.core import events as ev
from imagen_actors.db.gateway import Gateway
from imagen_actors.worker.handle import WorkerHandle
from imagen_actors.worker.health import STORE
from tests.fakes.comfyui_server import comfyui_server
from tests.fakes.supabase_storage import (
    EXPIRED_KEY,
    SERVICE_KEY,
    FakeSupabaseStorage,
    serve_fake_storage,
)
from tests.support.jobs import insert_job
from tests.support.worker import make_config, running_worker, wait_all_terminal

pytestmark = pytest.mark.db

PROBES = {"probe_min_s": 0.2, "probe_max_s": 0.5}
SUPABASE = {"type": "supabase", "max_attempts": 1, "timeout_s": 5}


async def until(condition: Any, timeout: float = 15) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.05)


def down(handle: WorkerHandle, name: str) -> bool:
    return not handle.dependencies_up().get(name, True)


async def statuses(gw: Gateway) -> list[tuple[str, int]]:
    rows = await gw.fetch_sql("SELECT status, attempts FROM imagen.jobs ORDER BY created_at")
    return [(r["status"], r["attempts"]) for r in rows]


async def assert_done_once(gw: Gateway, jobs: list[uuid.UUID]) -> list[list[ev.Event]]:
    """Every job done at attempt 1, rendered exactly once; returns the streams."""
    streams = []
    for job_id in jobs:
        row = await gw.fetchrow("load_job", job_id)
        assert (row["status"], row["attempts"]) == ("done", 1), (row["status"], row["error"])
        events = list(await gw.load_events(job_id))
        # A render ends in GenerationSucceeded or GenerationFailed; a kept image's upload
        # retry records GenerationReused instead (every claim records GenerationStarted).
        renders = [e for e in events if isinstance(e, ev.GenerationSucceeded | ev.GenerationFailed)]
        assert len(renders) == 1, [type(e).__name__ for e in events]
        streams.append(events)
    return streams


async def test_comfyui_refusing_connections_then_answering(
    database_url: str, tmp_path: Path
) -> None:
    """ComfyUI is down when the worker starts (its preflight fails): jobs wait pending with
    attempts untouched, /readyz-style health names it, and when it listens again on the same
    port the probe notices and every job runs once."""
    async with comfyui_server("ok") as server:
        await server.go_away()
        backends = {"gpu-box": {"type": "comfyui", "url": server.url}}
        cfg = make_config(tmp_path, database_url, backends=backends, **PROBES)
        async with running_worker(cfg) as (handle, gw):
            assert down(handle, "gpu-box")
            problem = handle.dependency_problem() or ""
            assert problem.startswith("gpu-box down since") and "connection refused" in problem
            jobs = [await insert_job(gw, f"a fox {i}", backend="gpu-box") for i in range(3)]
            await trio.sleep(2)  # several probes fail meanwhile
            assert await statuses(gw) == [("pending", 0)] * 3
            [seen] = await gw.fetch_sql("SELECT health FROM imagen.workers")
            assert seen["health"]["gpu-box"]["fault"] == "dependency"
            [row] = await gw.unhealthy_dependencies(60)
            line = describe_unhealthy(row)  # what `imagen-actors status` prints
            assert line.startswith("gpu-box down since ") and "connection refused" in line
            await server.come_back()
            await until(lambda: not down(handle, "gpu-box"))
            await wait_all_terminal(gw, timeout=30)
            await assert_done_once(gw, jobs)
            assert handle.restarts == {}


async def test_comfyui_going_away_mid_job_refunds_the_attempt(
    database_url: str, tmp_path: Path
) -> None:
    """ComfyUI stops listening while the worker runs: the job that meets it goes back to
    pending with its attempt refunded and the reason recorded; none fails."""
    async with comfyui_server("ok") as server:
        backends = {"gpu-box": {"type": "comfyui", "url": server.url}}
        cfg = make_config(tmp_path, database_url, backends=backends, **PROBES)
        async with running_worker(cfg) as (handle, gw):
            await server.go_away()
            jobs = [await insert_job(gw, f"a hare {i}", backend="gpu-box") for i in range(3)]
            await until(lambda: down(handle, "gpu-box"))
            await trio.sleep(1.5)
            assert all(s == "pending" for s, _ in await statuses(gw))
            await server.come_back()
            await wait_all_terminal(gw, timeout=30)
            rows = await statuses(gw)
            events = [e for j in jobs for e in await gw.load_events(j)]
    assert rows == [("done", 1)] * 3
    [requeued] = [e for e in events if isinstance(e, ev.JobRequeued)]
    assert requeued.refund_attempt and "dependency fault" in requeued.reason
    assert "connection refused" in (requeued.error or "")
    [failed] = [e for e in events if isinstance(e, ev.GenerationFailed)]
    assert failed.error_class == "dependency"


@pytest.mark.parametrize("outage", ["502-html", "544"])
async def test_storage_outage_costs_no_render_and_no_attempt(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outage: str
) -> None:
    """Storage answers a gateway's HTML 502 (or 544 DatabaseTimeout) for a few seconds: the
    images generated meanwhile are kept and uploaded when it is back (GenerationReused, its
    sha256 checked), nothing is rendered twice and no job fails or loses an attempt."""
    fake = FakeSupabaseStorage()
    async with serve_fake_storage(fake):
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
        cfg = make_config(tmp_path, database_url, storage=SUPABASE, **PROBES)
        async with running_worker(cfg) as (handle, gw):
            fake.outage = outage  # type: ignore[assignment]
            jobs = [await insert_job(gw, f"an owl {i}", seed=i) for i in range(3)]
            await until(lambda: down(handle, STORE))
            assert "storage down since" in (handle.dependency_problem() or "")
            await trio.sleep(1.5)
            waiting = await statuses(gw)
            assert all(s == "pending" for s, _ in waiting) and {a for _, a in waiting} == {0}
            fake.outage = None
            await wait_all_terminal(gw, timeout=30)
            streams = await assert_done_once(gw, jobs)
    reused = [e for s in streams for e in s if isinstance(e, ev.GenerationReused)]
    assert reused, "the job whose upload met the outage re-used its kept image"
    for stream in streams:
        succeeded = [e for e in stream if isinstance(e, ev.GenerationSucceeded)]
        stored = [e for e in stream if isinstance(e, ev.ImageStored)]
        assert len(succeeded) == 1 and len(stored) == 1
        assert stored[0].sha256 == succeeded[0].sha256
    for key, blob in fake.objects.items():
        assert blob.data, key


async def test_rejected_key_waits_until_fixed_and_restarted(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An expired service key fails the store's preflight (a configuration fault): nothing
    is claimed, so no job fails; after the key is fixed and the worker restarted, all run."""
    fake = FakeSupabaseStorage()
    async with serve_fake_storage(fake):
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", EXPIRED_KEY)
        cfg = make_config(tmp_path, database_url, storage=SUPABASE, **PROBES)
        async with running_worker(cfg) as (handle, gw):
            state = handle.dependencies.unhealthy()[STORE]  # type: ignore[union-attr]
            assert state.fault == "configuration" and "SUPABASE_SERVICE_KEY" in str(state.reason)
            jobs = [await insert_job(gw, f"a lynx {i}") for i in range(3)]
            await trio.sleep(1.5)
            assert await statuses(gw) == [("pending", 0)] * 3
            assert not fake.objects
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
        async with running_worker(cfg) as (handle, gw):
            assert not down(handle, STORE)
            await wait_all_terminal(gw, timeout=30)
            await assert_done_once(gw, jobs)
    assert len(fake.objects) == 3


async def test_emfile_in_one_job_does_not_crash_the_executor(
    database_url: str, tmp_path: Path
) -> None:
    """A backend whose lazy build fails with OSError(EMFILE): its job is requeued (attempt
    refunded, backend marked unhealthy) and the Executor goes on with the next job."""
    backends = {"mock": {"type": "mock"}, "broken": {"type": "mock", "emfile_on_build": True}}
    cfg = make_config(tmp_path, database_url, backends=backends, **PROBES)
    async with running_worker(cfg) as (handle, gw):
        # The preflight already found it: build it fine once, so the job meets the error.
        await until(lambda: down(handle, "broken"))
        handle.dependencies.mark_healthy("broken")  # type: ignore[union-attr]
        bad = await insert_job(gw, "an eel", backend="broken")
        await until(lambda: down(handle, "broken"))
        good = await insert_job(gw, "a newt")
        with trio.fail_after(20):
            while (await gw.fetchrow("load_job", good))["status"] != "done":
                await trio.sleep(0.05)
        row = await gw.fetchrow("load_job", bad)
        events = await gw.load_events(bad)
    assert handle.restarts == {}, "the Executor crashed"
    assert (row["status"], row["attempts"]) == ("pending", 0)
    requeued = [e for e in events if isinstance(e, ev.JobRequeued)]
    assert requeued and requeued[0].refund_attempt
    assert "Too many open files" in (requeued[0].error or "")


async def test_a_job_waits_at_most_max_wait_s(database_url: str, tmp_path: Path) -> None:
    """A backend down longer than worker.max_wait_s: its pending jobs fail naming it, since
    when and why; jobs of a healthy backend are untouched."""
    async with comfyui_server("ok") as server:
        await server.go_away()
        backends = {"gpu-box": {"type": "comfyui", "url": server.url}, "mock": {"type": "mock"}}
        cfg = make_config(tmp_path, database_url, backends=backends, max_wait_s=2, **PROBES)
        async with running_worker(cfg) as (_handle, gw):
            stuck = await insert_job(gw, "a crow", backend="gpu-box")
            fine = await insert_job(gw, "a wren")
            await wait_all_terminal(gw, timeout=20)
            row = await gw.fetchrow("load_job", stuck)
            other = await gw.fetchrow("load_job", fine)
    assert other["status"] == "done"
    assert row["status"] == "failed"
    assert row["error"].startswith("backend 'gpu-box' unavailable since "), row["error"]
    assert "connection refused" in row["error"] and "worker.max_wait_s=2" in row["error"]
