"""A real worker against the fake ComfyUI: what the job records (issue 15, items 9 and 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagen_actors.core import events as ev
from tests.fakes.comfyui_server import comfyui_server
from tests.support.jobs import insert_job
from tests.support.worker import make_config, running_worker, wait_terminal

pytestmark = pytest.mark.db


async def test_worker_records_the_size_of_the_png(database_url: str, tmp_path: Path) -> None:
    """Asked for 770x514, ComfyUI made 512x512: the event, the images row and the sidecar
    say 512x512 (the request's size stays on the job)."""
    async with comfyui_server("ok") as server:
        cfg = make_config(
            tmp_path, database_url, backends={"gpu-box": {"type": "comfyui", "url": server.url}}
        )
        async with running_worker(cfg) as (_handle, gw):
            job_id = await insert_job(gw, "a fox", backend="gpu-box", width=770, height=514)
            row = await wait_terminal(gw, job_id)
            [image] = await gw.fetch_sql(
                "SELECT width, height, metadata FROM imagen.images WHERE job_id = $1", job_id
            )
            events = await gw.load_events(job_id)
    assert row["status"] == "done", row["error"]
    assert (row["width"], row["height"]) == (770, 514)
    assert (image["width"], image["height"]) == (512, 512)
    [succeeded] = [e for e in events if isinstance(e, ev.GenerationSucceeded)]
    assert (succeeded.metadata["width"], succeeded.metadata["height"]) == (512, 512)
    assert (succeeded.metadata["steps"], succeeded.metadata["cfg"]) == (4, 1.0)
    [sidecar] = (tmp_path / "out").rglob("*.json")
    assert json.loads(sidecar.read_text())["size"] == {"width": 512, "height": 512}


async def test_job_error_names_the_instance_once(database_url: str, tmp_path: Path) -> None:
    """A failed job's error reads "gpu-box: ComfyUI: ... (gave up after 1 attempt)"."""
    async with comfyui_server("malformed") as server:
        cfg = make_config(
            tmp_path, database_url, backends={"gpu-box": {"type": "comfyui", "url": server.url}}
        )
        async with running_worker(cfg) as (_handle, gw):
            job_id = await insert_job(gw, "a fox", backend="gpu-box", max_attempts=1)
            row = await wait_terminal(gw, job_id, timeout=30)
    assert row["status"] == "failed"
    error = row["error"]
    assert error.startswith("gpu-box: ComfyUI: POST /prompt: HTTP 500"), error
    assert error.count("gpu-box") == 1
    assert error.endswith("(gave up after 1 attempt)"), error
