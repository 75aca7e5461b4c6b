"""A worker running Replicate jobs against the fake Replicate API (real loopback HTTP, real
Postgres): a cancel stops the named prediction; a worker killed mid-prediction is resumed by
the next one without a second paid create."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from imagen_actors.cli.commands import replay as replay_cmd
from imagen_actors.config.settings import ENV_WORKER_NAME
from imagen_actors.core import events as ev
from imagen_actors.db.gateway import Gateway
from tests.fakes.replicate_server import TOKEN, FakeReplicate, fake_replicate
from tests.integration.test_cancel_running import assert_cancelled_cleanly
from tests.support.jobs import assert_replay_matches, insert_job
from tests.support.worker import make_config, running_worker, wait_terminal, worker_process

pytestmark = pytest.mark.db

ENV = "IMAGEN_TEST_REPLICATE_TOKEN"
CREATE = "/v1/models/black-forest-labs/flux-schnell/predictions"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, TOKEN)


def rep(fake: FakeReplicate) -> dict[str, Any]:
    return {
        "rep": {
            "type": "replicate",
            "model": "black-forest-labs/flux-schnell",
            "api_token_env": ENV,
            "base_url": fake.base_url,
            "poll_interval_s": 0.05,
            # A held create whose model is not done answers after 1 s, then it is polled.
            "prefer_wait_s": 1,
            "timeout_s": 120,
        }
    }


async def prediction_of(gw: Gateway, job: uuid.UUID) -> str:
    with trio.fail_after(30):
        while True:
            for e in await gw.load_events(job):
                if isinstance(e, ev.PredictionCreated):
                    return e.external_id
            await trio.sleep(0.02)


async def test_cancel_job_cancels_the_running_prediction(database_url: str, tmp_path: Path) -> None:
    """cancel_job on a running Replicate job: the worker POSTs /cancel for the prediction its
    PredictionCreated names, and the job ends cancelled with no image and no usage row."""
    async with fake_replicate() as fake:
        fake.never_finish = True
        cfg = make_config(tmp_path, database_url, backends=rep(fake))
        async with running_worker(cfg) as (_h, gw):
            job = await insert_job(gw, "a fox that never renders", backend="rep")
            pid = await prediction_of(gw, job)
            assert await gw.cancel_job(job, "stop it") == "running"
            await assert_cancelled_cleanly(gw, job, tmp_path)
        assert [r.path for r in fake.hits("POST", "/v1/predictions/")] == [
            f"/v1/predictions/{pid}/cancel"
        ]
        assert fake.predictions[pid].status == "canceled"
        assert len(fake.hits("POST", CREATE)) == 1


async def test_a_worker_killed_mid_prediction_is_resumed_without_a_second_create(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 after PredictionCreated: the restarted worker (same id: requeue_own at start)
    claims the job again, GETs the recorded prediction (which finished meanwhile) and stores
    its image. Replicate saw one create and no cancel."""
    async with fake_replicate() as fake:
        fake.never_finish = True
        cfg = make_config(tmp_path, database_url, name="a", backends=rep(fake))
        async with Gateway.open(database_url) as gw:
            victim = worker_process(Path(cfg.source), name="host-a:a")
            try:
                job = await insert_job(gw, "a fox that outlives its worker", backend="rep")
                pid = await prediction_of(gw, job)
            finally:
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
            fake.never_finish = False  # it finished on Replicate while no worker watched
            monkeypatch.setenv(ENV_WORKER_NAME, "host-a:a")
            async with running_worker(cfg) as (_h, gw2):
                row = await wait_terminal(gw2, job, timeout=30)
            assert (row["status"], row["attempts"]) == ("done", 2), row
            assert len(fake.hits("POST", CREATE)) == 1
            assert fake.hits("POST", "/v1/predictions/") == []  # nothing cancelled
            assert len(fake.hits("GET", f"/files/{pid}-out-0.png")) == 1
            images = await gw.fetch_sql("SELECT * FROM imagen.images WHERE job_id = $1", job)
            assert len(images) == 1
            assert (
                len(await gw.fetch_sql("SELECT 1 FROM mai.imagen_usage WHERE job_id = $1", job))
                == 1
            )
            events = await gw.load_events(job)
            requeued = next(i for i, e in enumerate(events) if isinstance(e, ev.JobRequeued))
            assert "restarted" in events[requeued].reason  # type: ignore[attr-defined]
            assert not any(isinstance(e, ev.PredictionCreated) for e in events[requeued:])
            (succeeded,) = [e for e in events if isinstance(e, ev.GenerationSucceeded)]
            assert succeeded.metadata["prediction_id"] == pid and succeeded.metadata["resumed"]
            await assert_replay_matches(gw, job)
            assert (await replay_cmd.verify_one(gw, job)).ok
