"""Slots per backend with a real worker: a remote backend (Replicate, against its fake over
loopback HTTP) has its own pool, so its jobs run while the GPU's one slot is busy, and
``slots: N`` runs N of them at once; a job is never ``running`` while it waits for a slot."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from imagen_actors.core import events as ev
from imagen_actors.db.gateway import Gateway
from tests.fakes.replicate_server import TOKEN, FakeReplicate, fake_replicate
from tests.support.jobs import insert_job
from tests.support.worker import make_config, running_worker, wait_terminal

pytestmark = pytest.mark.db

ENV = "IMAGEN_TEST_REPLICATE_TOKEN"
# Long enough that every assertion below runs while the GPU job still renders; the test
# cancels it at the end instead of waiting.
GPU_LATENCY_MS = 120_000


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(ENV, TOKEN)
    yield


def backends(fake: FakeReplicate, **replicate: Any) -> dict[str, Any]:
    return {
        "mock": {"type": "mock", "latency_ms": GPU_LATENCY_MS},
        "flux": {
            "type": "replicate",
            "model": "black-forest-labs/flux-schnell",
            "api_token_env": ENV,
            "base_url": fake.base_url,
            "poll_interval_s": 0.05,
            **replicate,
        },
    }


async def status(gw: Gateway, job: uuid.UUID) -> str:
    row = await gw.fetchrow("load_job", job)
    assert row is not None
    return str(row["status"])


async def wait_started(gw: Gateway, job: uuid.UUID) -> None:
    with trio.fail_after(30):
        while not any(isinstance(e, ev.GenerationStarted) for e in await gw.load_events(job)):
            await trio.sleep(0.02)


async def test_a_replicate_job_runs_while_the_gpu_slot_is_busy(
    database_url: str, tmp_path: Path
) -> None:
    async with fake_replicate() as fake:
        cfg = make_config(tmp_path, database_url, backends=backends(fake))
        async with running_worker(cfg) as (_h, gw):
            on_gpu = await insert_job(gw, "a slow owl on the GPU")
            await wait_started(gw, on_gpu)
            # A second GPU job waits pending: the one GPU slot is taken.
            queued = await insert_job(gw, "an owl behind it")
            remote = await insert_job(gw, "a fox from Replicate", backend="flux")
            row = await wait_terminal(gw, remote, timeout=30)
            assert row["status"] == "done"
            assert await status(gw, on_gpu) == "running"
            assert await status(gw, queued) == "pending"
            for job in (on_gpu, queued):
                await gw.cancel_job(job, "test over")
            await wait_terminal(gw, on_gpu, timeout=30)
    assert len(fake.hits("POST", "/v1/models/")) == 1


async def test_remote_slots_run_that_many_predictions_at_once(
    database_url: str, tmp_path: Path
) -> None:
    async with fake_replicate() as fake:
        fake.never_finish = True
        cfg = make_config(tmp_path, database_url, backends=backends(fake, slots=2))
        async with running_worker(cfg) as (_h, gw):
            jobs = [await insert_job(gw, f"fox {i}", backend="flux") for i in range(3)]
            with trio.fail_after(30):
                while len(fake.hits("POST", "/v1/models/")) < 2:
                    await trio.sleep(0.02)
            states = sorted([await status(gw, j) for j in jobs])
            # Two running (their predictions created), the third pending, never running
            # while it waits for a slot.
            assert states == ["pending", "running", "running"]
            assert len(fake.hits("POST", "/v1/models/")) == 2
            for job in jobs:
                await gw.cancel_job(job, "test over")
            for job in jobs:
                assert (await wait_terminal(gw, job, timeout=30))["status"] == "cancelled"
