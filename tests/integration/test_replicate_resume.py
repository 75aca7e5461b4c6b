"""Replicate: Prefer: wait then poll, the created() hook, and resuming a recorded prediction,
against the fake Replicate API over real loopback HTTP (no database)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagen_actors.backends.replicate_protocol import RESUME_MAX_AGE_S
from imagen_actors.core.fold import ExternalRun
from tests.fakes.replicate_server import PNG, TOKEN, FakeReplicate, Prediction, fake_replicate
from tests.integration.test_replicate import ENV, backend, request

CREATE = "/v1/models/black-forest-labs/flux-schnell/predictions"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(ENV, TOKEN)
    yield


def recorder() -> tuple[list[str], Any]:
    ids: list[str] = []

    async def created(external_id: str) -> None:
        ids.append(external_id)

    return ids, created


def existing(fake: FakeReplicate, pid: str, status: str) -> None:
    """A prediction an earlier attempt created (Replicate still has it)."""
    model = "black-forest-labs/flux-schnell"
    fake.predictions[pid] = Prediction(pid, model, "hidden", {"prompt": "a red fox"}, status=status)


def run(pid: str, age_s: float = 30.0) -> ExternalRun:
    at = datetime.now(UTC) - timedelta(seconds=age_s)
    return ExternalRun(backend="replicate-test", id=pid, created_at=at)


async def test_default_create_holds_with_prefer_wait_and_sets_cancel_after() -> None:
    """Without prefer_wait_s the create says ``Prefer: wait=5`` (<= 60) and ``Cancel-After:
    60s`` (schnell's timeout_s); a model done within the hold needs no poll at all."""
    async with fake_replicate() as fake, backend(fake, prefer_wait_s=5) as b:
        ids, created = recorder()
        result = await b.generate(request(), lambda s, t: None, created=created)
    assert result.image == PNG
    (create,) = fake.hits("POST", CREATE)
    assert create.headers["prefer"] == "wait=5"
    assert create.headers["cancel-after"] == "60s"
    assert fake.hits("GET", "/v1/predictions/") == []
    assert ids == ["pred0000"]


def test_the_adapter_default_is_a_short_prefer_wait() -> None:
    from imagen_actors.backends.replicate_protocol import ReplicateConfig

    assert 0 < ReplicateConfig(model="a/b").prefer_wait_s <= 60


async def test_a_slow_prediction_is_held_then_polled_and_recorded_before_the_first_poll() -> None:
    """Not done within the 1 s hold: the create answers unfinished, created(id) is awaited
    before any GET, then polling finishes it."""
    async with fake_replicate() as fake, backend(fake, prefer_wait_s=1, default_steps=4) as b:
        fake.polls_before_done = 2
        order: list[str] = []

        async def created(external_id: str) -> None:
            order.append(f"created {external_id}; GETs so far {len(fake.hits('GET', '/v1/p'))}")

        result = await b.generate(request(), lambda s, t: None, created=created)
    assert result.image == PNG
    assert order == ["created pred0000; GETs so far 0"]
    assert len(fake.hits("GET", "/v1/predictions/pred0000")) == 3
    assert result.metadata["resumed"] is False


async def test_a_failing_created_hook_cancels_the_prediction() -> None:
    """If recording PredictionCreated fails, nobody could resume it: it is cancelled."""
    async with fake_replicate() as fake, backend(fake) as b:
        fake.never_finish = True

        async def created(external_id: str) -> None:
            raise RuntimeError("database gone")

        with pytest.raises(RuntimeError, match="database gone"):
            await b.generate(request(), lambda s, t: None, created=created)
    assert [r.path for r in fake.hits("POST", "/v1/predictions/")] == [
        "/v1/predictions/pred0000/cancel"
    ]


async def test_a_running_prediction_is_resumed_without_a_post() -> None:
    async with fake_replicate() as fake, backend(fake) as b:
        existing(fake, "old1", "processing")
        fake.polls_before_done = 1
        ids, created = recorder()
        result = await b.generate(request(resume=run("old1")), lambda s, t: None, created=created)
    assert result.image == PNG
    assert fake.hits("POST", "/v1/") == []
    assert ids == []
    assert result.metadata["prediction_id"] == "old1" and result.metadata["resumed"] is True


async def test_a_succeeded_prediction_is_downloaded_at_once() -> None:
    async with fake_replicate() as fake, backend(fake) as b:
        existing(fake, "old2", "succeeded")
        result = await b.generate(request(resume=run("old2")), lambda s, t: None)
    assert result.image == PNG
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", "/v1/predictions/old2"),
        ("GET", "/files/old2-out-0.png"),
    ]


@pytest.mark.parametrize("status", ["failed", "canceled", "aborted", "missing"])
async def test_an_ended_or_missing_prediction_gets_a_new_one(status: str) -> None:
    async with fake_replicate() as fake, backend(fake) as b:
        if status != "missing":
            existing(fake, "old3", status)
        ids, created = recorder()
        result = await b.generate(request(resume=run("old3")), lambda s, t: None, created=created)
    assert result.image == PNG
    assert len(fake.hits("GET", "/v1/predictions/old3")) == 1
    assert len(fake.hits("POST", CREATE)) == 1
    assert ids == ["pred0000"] and result.metadata["resumed"] is False


async def test_a_prediction_older_than_the_retention_window_is_not_resumed() -> None:
    """Replicate drops an API prediction's data after about an hour: past RESUME_MAX_AGE_S
    not even a GET is spent on it."""
    async with fake_replicate() as fake, backend(fake) as b:
        existing(fake, "old4", "processing")
        ids, created = recorder()
        stale = run("old4", age_s=RESUME_MAX_AGE_S + 60)
        await b.generate(request(resume=stale), lambda s, t: None, created=created)
    assert fake.hits("GET", "/v1/predictions/old4") == []
    assert len(fake.hits("POST", CREATE)) == 1 and ids == ["pred0000"]


async def test_the_fake_refuses_a_prefer_wait_over_60() -> None:
    """The fake holds Replicate's header rule (1..60), so the header tests above mean it."""
    async with fake_replicate() as fake:
        reply = fake.route(
            "POST", CREATE, {"authorization": f"Bearer {TOKEN}", "prefer": "wait=61"}, {"input": {}}
        )
    assert reply.status == 422
