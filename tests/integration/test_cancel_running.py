"""Cancelling a running job: the holding worker stops the work and records JobCancelled; no
image row, no object, no usage row. A cancel after the image was stored comes too late."""

from __future__ import annotations

import uuid
from pathlib import Path

import attrs
import pytest
import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.db.gateway import Gateway
from tests.fakes.comfyui_server import comfyui_server
from tests.support import events as support
from tests.support.jobs import OWNER, assert_replay_matches, insert_job
from tests.support.worker import make_config, running_worker, wait_terminal

pytestmark = pytest.mark.db


async def wait_running(gw: Gateway, job: uuid.UUID, event: type[ev.Event]) -> None:
    with trio.fail_after(30):
        while not any(isinstance(e, event) for e in await gw.load_events(job)):
            await trio.sleep(0.02)


async def assert_cancelled_cleanly(gw: Gateway, job: uuid.UUID, tmp_path: Path) -> None:
    row = await wait_terminal(gw, job, timeout=30)
    assert (row["status"], row["error"]) == ("cancelled", "stop it")
    for table in ("imagen.images", "mai.imagen_usage"):
        assert not await gw.fetch_sql(f"SELECT 1 FROM {table} WHERE job_id = $1", job)
    assert not list((tmp_path / "objects").rglob("*.png"))
    events = await gw.load_events(job)
    assert [type(e).__name__ for e in events][-2:] == ["JobCancelRequested", "JobCancelled"]
    await assert_replay_matches(gw, job)


async def test_a_running_mock_job_stops_within_a_second(database_url: str, tmp_path: Path) -> None:
    """A 30 s mock generation is stopped soon after cancel_job (the control NOTIFY pokes the
    lease renewal at once rather than at its 10 s interval)."""
    cfg = make_config(
        tmp_path, database_url, backends={"mock": {"type": "mock", "latency_ms": 30_000}}
    )
    async with running_worker(cfg) as (_h, gw):
        job = await insert_job(gw, "a very slow owl")
        await wait_running(gw, job, ev.GenerationStarted)
        asked = trio.current_time()
        assert await gw.cancel_job(job, "stop it") == "running"
        await assert_cancelled_cleanly(gw, job, tmp_path)
        # Generous for a loaded machine; the bench measures the real latency.
        assert trio.current_time() - asked < 10


async def test_a_running_comfyui_job_is_deleted_then_interrupted(
    database_url: str, tmp_path: Path
) -> None:
    """ComfyUI: the prompt is deleted from the queue, then interrupted, and the job ends
    cancelled."""
    async with comfyui_server("hang") as server:
        cfg = make_config(
            tmp_path, database_url, backends={"gpu-box": {"type": "comfyui", "url": server.url}}
        )
        async with running_worker(cfg) as (_h, gw):
            job = await insert_job(gw, "a stuck fox", backend="gpu-box")
            await wait_running(gw, job, ev.GenerationStarted)
            with trio.fail_after(30):
                while not any(p == "/prompt" for _m, p, _b in server.requests):
                    await trio.sleep(0.02)
            await gw.cancel_job(job, "stop it")
            await assert_cancelled_cleanly(gw, job, tmp_path)
    posts = [p for m, p, _b in server.requests if m == "POST" and p in ("/queue", "/interrupt")]
    assert posts[:2] == ["/queue", "/interrupt"], server.requests


async def test_a_cancel_after_the_image_was_stored_comes_too_late(gateway: Gateway) -> None:
    """A request that reaches the stream while the upload finishes: the completion still
    commits (the image is stored), its JobCompleted says the cancel came too late, and a
    cancel of the done job is a no-op."""
    late = await insert_job(gateway, "a late owl")
    assert await gateway.claim(dc.claim("t:w", 60)) is not None
    await gateway.transition(late, dc.generation_succeeded("t:w", support.outcome(), 60, attempt=1))
    assert await gateway.cancel_job(late, "stop it") == "running"
    image = attrs.evolve(support.image_row(late), owner_user_id=OWNER)
    done = await gateway.store_image_and_transition(
        image, dc.complete("t:w", image, attempt=1, local_path=None)
    )
    assert done.state.status == "done"
    (completed,) = [e for e in done.events if isinstance(e, ev.JobCompleted)]
    assert completed.cancel_came_too_late
    assert await gateway.cancel_job(late, "again") == "done"
    await assert_replay_matches(gateway, late)
