"""The Replicate adapter against a fake Replicate API over real loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from imagen_actors.backends.base import GenerationRequest
from imagen_actors.backends.replicate import ReplicateBackend, build
from imagen_actors.core.errors import ConfigError, GenerationError
from tests.fakes.replicate_server import DROP, PNG, TOKEN, FakeReplicate, Reply, fake_replicate

ENV = "IMAGEN_TEST_REPLICATE_TOKEN"
VERSION = "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(ENV, TOKEN)
    yield


def request(**kw: Any) -> GenerationRequest:
    base: dict[str, Any] = {
        "prompt": "a red fox",
        "user_prompt": "a red fox",
        "width": 1344,
        "height": 768,
        "seed": 42,
    }
    base.update(kw)
    return GenerationRequest(**base)


def progress_sink() -> tuple[list[tuple[int, int]], Any]:
    seen: list[tuple[int, int]] = []
    return seen, lambda step, total: seen.append((step, total))


@asynccontextmanager
async def backend(fake: FakeReplicate, **block: Any) -> AsyncIterator[ReplicateBackend]:
    cfg: dict[str, Any] = {
        "type": "replicate",
        "model": "black-forest-labs/flux-schnell",
        "api_token_env": ENV,
        "base_url": fake.base_url,
        "poll_interval_s": 0.01,
        # Plain polling unless a test asks for a held create (test_replicate_resume has the
        # default's).
        "prefer_wait_s": 0,
        "backoff_s": 0.01,
        "cancel_timeout_s": 2,
    }
    cfg.update(block)
    b = build("replicate-test", cfg)
    try:
        yield b
    finally:
        await b.aclose()


async def test_success_after_polls() -> None:
    """A prediction that succeeds after a few polls yields the downloaded PNG and metadata."""
    async with fake_replicate() as fake, backend(fake, default_steps=4) as b:
        fake.polls_before_done = 3
        seen, progress = progress_sink()
        result = await b.generate(request(), progress)
        assert result.image == PNG
        assert result.mime == "image/png"
        assert result.model == "black-forest-labs/flux-schnell"
        assert result.cost_usd_estimate == pytest.approx(0.003)
        assert result.metadata["aspect_ratio"] == "16:9"
        assert len(fake.hits("GET", "/v1/predictions/")) == 4
        create = fake.hits("POST", "/v1/models/black-forest-labs/flux-schnell/predictions")
        assert len(create) == 1
        assert create[0].body == {
            "input": {
                "prompt": "a red fox",
                "seed": 42,
                "aspect_ratio": "16:9",
                "output_format": "png",
                "num_inference_steps": 4,
            }
        }
        assert create[0].headers["authorization"] == f"Bearer {TOKEN}"
        assert create[0].headers["cancel-after"] == "60s"
        assert "prefer" not in create[0].headers
        assert seen[-1] == (4, 4)


async def test_output_as_single_url_and_opts_override() -> None:
    """A bare-string output is downloaded; config opts then request opts override mapped input."""
    async with (
        fake_replicate() as fake,
        backend(fake, opts={"output_format": "webp", "go_fast": False}) as b,
    ):
        fake.output_as_list = False
        result = await b.generate(request(steps=2, opts={"go_fast": True}), lambda s, t: None)
        assert result.image == PNG
        body = fake.hits("POST", "/v1/models/")[0].body["input"]
        assert body["output_format"] == "webp"
        assert body["go_fast"] is True
        assert body["num_inference_steps"] == 2


@pytest.mark.parametrize("key", ["prompt", "seed"])
async def test_job_opts_may_not_replace_the_recorded_prompt_or_seed(key: str) -> None:
    """opts.prompt / opts.seed would make the image row lie: refused before anything is paid."""
    async with fake_replicate() as fake, backend(fake) as b:
        with pytest.raises(GenerationError, match=rf"opts\.{key}: .*resubmit") as info:
            await b.generate(request(opts={key: "something else"}), lambda s, t: None)
        assert info.value.error_class == "permanent"
        assert fake.hits("POST", "/v1/") == []


@pytest.mark.parametrize("key", ["prompt", "seed"])
def test_config_opts_may_not_replace_the_recorded_prompt_or_seed(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"backends\.r\.opts\.{key}: .* remove it"):
        build(
            "r", {"type": "replicate", "model": "black-forest-labs/flux-schnell", "opts": {key: 1}}
        )


async def test_versioned_ref_posts_to_predictions_with_version() -> None:
    """An owner/name:version ref creates through POST /v1/predictions with the version."""
    ref = f"black-forest-labs/flux-dev:{VERSION}"
    async with fake_replicate() as fake, backend(fake, model=ref) as b:
        result = await b.generate(request(), lambda s, t: None)
        assert result.image == PNG
        assert result.cost_usd_estimate == pytest.approx(0.025)
        (create,) = fake.hits("POST", "/v1/predictions")
        assert create.path == "/v1/predictions"
        assert create.body["version"] == ref
        assert create.headers["cancel-after"] == "120s"
        assert not fake.hits("POST", "/v1/models/")


async def test_failed_prediction_is_permanent_with_replicate_error() -> None:
    """A failed prediction (NSFW filter) raises a permanent error carrying Replicate's text."""
    nsfw = (
        "All generated images contained NSFW content. Try running it again with a different prompt."
    )
    async with fake_replicate() as fake, backend(fake) as b:
        fake.fail_with = nsfw
        with pytest.raises(GenerationError, match="NSFW content") as info:
            await b.generate(request(), lambda s, t: None)
        assert info.value.error_class == "permanent"


async def test_failed_prediction_out_of_memory_is_transient() -> None:
    """A failed prediction whose error says CUDA out of memory is transient."""
    async with fake_replicate() as fake, backend(fake) as b:
        fake.fail_with = "CUDA out of memory. Tried to allocate 2.00 GiB"
        with pytest.raises(GenerationError, match="CUDA out of memory") as info:
            await b.generate(request(), lambda s, t: None)
        assert info.value.error_class == "transient"


async def test_unauthorized_is_a_configuration_fault_naming_the_variable() -> None:
    """A 401 raises a permanent error naming the env var that holds the token."""
    async with fake_replicate() as fake, backend(fake) as b:
        fake.token = "something-else"
        with pytest.raises(GenerationError, match=rf"rejected the token in \${ENV}") as info:
            await b.generate(request(), lambda s, t: None)
        assert info.value.error_class == "configuration"
        assert len(fake.requests) == 1


async def test_rate_limited_create_honours_retry_after_then_succeeds() -> None:
    """A 429 on creation is retried after Retry-After (not the long backoff) and then succeeds."""
    throttled = Reply(
        429,
        {"detail": "Request was throttled. Expected available in 1 second."},
        {"Retry-After": "0"},
    )
    async with fake_replicate() as fake, backend(fake, backoff_s=30) as b:
        fake.script("create", throttled, throttled)
        with trio.fail_after(5):
            result = await b.generate(request(), lambda s, t: None)
        assert result.image == PNG
        assert len(fake.hits("POST", "/v1/models/")) == 3
        assert len(fake.predictions) == 1


async def test_rate_limited_gives_up_after_three_retries() -> None:
    """Four 429s in a row (backoff without Retry-After) end in a transient error."""
    throttled = Reply(429, {"detail": "Request was throttled."})
    async with fake_replicate() as fake, backend(fake) as b:
        fake.script("create", *[throttled] * 4)
        with pytest.raises(GenerationError, match="rate limited") as info:
            await b.generate(request(), lambda s, t: None)
        assert info.value.error_class == "dependency"
        assert len(fake.hits("POST", "/v1/models/")) == 4


async def test_server_error_once_is_retried() -> None:
    """One 500 on a poll is retried once and the run succeeds."""
    async with fake_replicate() as fake, backend(fake) as b:
        fake.polls_before_done = 1
        fake.script("get", Reply(500, {"detail": "internal error"}))
        result = await b.generate(request(), lambda s, t: None)
        assert result.image == PNG
        assert not fake.hits("POST", "/v1/predictions/")  # no cancel


async def test_server_error_twice_is_a_dependency_fault_and_cancels() -> None:
    """Two 500s in a row raise a transient error and cancel the running prediction."""
    async with fake_replicate() as fake, backend(fake) as b:
        fake.never_finish = True
        fake.script("get", Reply(500, {"detail": "boom"}), Reply(503, {"detail": "boom"}))
        with pytest.raises(GenerationError, match="twice") as info:
            await b.generate(request(), lambda s, t: None)
        assert info.value.error_class == "dependency"
        assert len(fake.hits("POST", "/v1/predictions/pred0000/cancel")) == 1


async def test_create_server_error_twice_is_a_dependency_fault() -> None:
    """Two 500s on creation give up with a transient error and nothing created."""
    async with fake_replicate() as fake, backend(fake) as b:
        fake.script("create", Reply(500, {"detail": "x"}), Reply(500, {"detail": "x"}))
        with pytest.raises(GenerationError) as info:
            await b.generate(request(), lambda s, t: None)
        assert info.value.error_class == "dependency"
        assert not fake.predictions


async def test_dropped_create_is_not_retried() -> None:
    """A create whose connection drops after sending is not re-sent (could double-bill)."""
    async with fake_replicate() as fake, backend(fake) as b:
        fake.script("create", DROP)
        with pytest.raises(GenerationError, match="create prediction") as info:
            await b.generate(request(), lambda s, t: None)
        assert info.value.error_class == "dependency"
        assert len(fake.hits("POST", "/v1/models/")) == 1


async def test_dropped_poll_is_retried_once() -> None:
    """A poll whose connection drops is retried once (GET is idempotent)."""
    async with fake_replicate() as fake, backend(fake) as b:
        fake.script("get", DROP)
        result = await b.generate(request(), lambda s, t: None)
        assert result.image == PNG
        assert len(fake.hits("GET", "/v1/predictions/")) == 2


async def test_output_download_500_once_then_ok() -> None:
    """The output download is retried once after a 500."""
    async with fake_replicate() as fake, backend(fake) as b:
        fake.script("output", Reply(500, b"oops"))
        result = await b.generate(request(), lambda s, t: None)
        assert result.image == PNG
        assert len(fake.hits("GET", "/files/")) == 2


async def test_output_download_failing_twice_is_a_dependency_fault() -> None:
    """An output that cannot be fetched twice (expired) is a transient error."""
    async with fake_replicate() as fake, backend(fake) as b:
        fake.script("output", Reply(404, b"gone"), Reply(404, b"gone"))
        with pytest.raises(GenerationError, match="download") as info:
            await b.generate(request(), lambda s, t: None)
        assert info.value.error_class == "dependency"


def first_progress() -> tuple[trio.Event, Any]:
    """A progress callback and the Event it sets on the first report. The adapter reports
    right before it sleeps until the next poll, so once the Event is set the prediction is
    created (its id known) and the adapter is parked in that sleep."""
    reported = trio.Event()
    return reported, lambda step, total: reported.set()


async def test_cancellation_cancels_the_prediction() -> None:
    """Cancelling generate mid-poll posts to the cancel endpoint and lets Cancelled through."""
    async with fake_replicate() as fake, backend(fake, cancel_timeout_s=30) as b:
        fake.never_finish = True
        fake.processing_on_create = True
        reported, progress = first_progress()
        cancelled_caught = False

        async def run(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            nonlocal cancelled_caught
            with trio.CancelScope() as scope:
                task_status.started(scope)
                await b.generate(request(), progress)
            cancelled_caught = scope.cancelled_caught

        async with trio.open_nursery() as n:
            scope = await n.start(run)
            with trio.fail_after(30):
                await reported.wait()
            scope.cancel()
        assert cancelled_caught
        assert len(fake.hits("POST", "/v1/predictions/pred0000/cancel")) == 1
        assert fake.predictions["pred0000"].status == "canceled"


async def test_timeout_cancels_and_is_transient(mock_clock: trio.testing.MockClock) -> None:
    """A prediction slower than timeout_s is cancelled and reported as transient. The clock is
    pytest-trio's frozen MockClock: it moves only when the test jumps it, once the prediction
    is created and being polled, so a slow machine cannot time out the create instead."""
    async with fake_replicate() as fake, backend(fake, timeout_s=600, poll_interval_s=5) as b:
        fake.never_finish = True
        fake.processing_on_create = True
        reported, progress = first_progress()
        failure: list[GenerationError] = []

        async def run() -> None:
            with pytest.raises(GenerationError, match="timeout_s") as info:
                await b.generate(request(), progress)
            failure.append(info.value)

        async with trio.open_nursery() as n:
            n.start_soon(run)
            await reported.wait()
            assert not fake.hits("GET", "/v1/predictions/")  # parked before its first poll
            mock_clock.jump(601)
        (error,) = failure
        assert error.error_class == "transient"
        assert len(fake.hits("POST", "/v1/predictions/pred0000/cancel")) == 1
        assert fake.predictions["pred0000"].status == "canceled"


async def test_canceled_on_replicate_is_transient() -> None:
    """A prediction canceled on Replicate's side (not by us) is a transient failure."""
    async with fake_replicate() as fake, backend(fake) as b:
        fake.polls_before_done = 5
        fake.script("get", Reply(200, {"id": "pred0000", "status": "canceled", "error": None}))
        with pytest.raises(GenerationError, match="ended canceled") as info:
            await b.generate(request(), lambda s, t: None)
        assert info.value.error_class == "transient"


async def test_prefer_wait_skips_polling() -> None:
    """prefer_wait_s sends Prefer: wait=N; a finished create reply needs no poll."""
    async with fake_replicate() as fake, backend(fake, prefer_wait_s=10) as b:
        result = await b.generate(request(), lambda s, t: None)
        assert result.image == PNG
        assert fake.hits("POST", "/v1/models/")[0].headers["prefer"] == "wait=10"
        assert not fake.hits("GET", "/v1/predictions/")


async def test_missing_token_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the token variable generate raises ConfigError naming it and sends nothing."""
    monkeypatch.delenv(ENV)
    async with fake_replicate() as fake, backend(fake) as b:
        with pytest.raises(ConfigError, match=ENV):
            await b.generate(request(), lambda s, t: None)
        assert not fake.requests


async def test_check_not_configured_without_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """check() reports 'not configured (set VAR)' when the token variable is unset."""
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    b = build("r", {"type": "replicate", "model": "black-forest-labs/flux-schnell"})
    status = await b.check()
    assert (status.ok, status.detail) == (False, "not configured (set REPLICATE_API_TOKEN)")
    await b.aclose()


async def test_check_ok_and_rejected_token() -> None:
    """check() is ok with a good token and names the variable when the token is rejected."""
    async with fake_replicate() as fake, backend(fake) as b:
        assert (await b.check()).ok
        fake.token = "other"
        status = await b.check()
        assert not status.ok
        assert ENV in status.detail


async def test_check_unreachable() -> None:
    """check() reports unreachable when nothing listens at base_url."""
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    b = build(
        "r",
        {
            "type": "replicate",
            "model": "black-forest-labs/flux-schnell",
            "api_token_env": ENV,
            "base_url": f"http://127.0.0.1:{port}",
        },
    )
    status = await b.check()
    await b.aclose()
    assert not status.ok
    assert status.detail.startswith("unreachable")


async def test_unpriced_model_is_flagged_and_override_wins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unknown model costs 0.0 with cost_priced False (and a warning); an override prices it."""
    async with fake_replicate() as fake:
        async with backend(fake, model="someone/custom-flux") as b:
            result = await b.generate(request(), lambda s, t: None)
            assert result.cost_usd_estimate == 0.0
            assert result.metadata["cost_priced"] is False
        assert "no price known" in caplog.text
        async with backend(fake, model="someone/custom-flux", cost_usd_per_image=0.01) as b:
            result = await b.generate(request(opts={"num_outputs": 2}), lambda s, t: None)
            assert result.cost_usd_estimate == pytest.approx(0.02)
            assert result.metadata["cost_priced"] is True


def test_config_rejects_unknown_fields_and_bad_refs() -> None:
    """Unknown keys and malformed model refs raise ConfigError naming the key."""
    with pytest.raises(ConfigError, match=r"backends\.r"):
        build("r", {"type": "replicate", "model": "a/b", "api_token": "inline"})
    with pytest.raises(ConfigError, match=r"backends\.r\.model"):
        build("r", {"type": "replicate", "model": "not a ref"})
    with pytest.raises(ConfigError, match="prefer_wait_s"):
        build("r", {"type": "replicate", "model": "a/b", "prefer_wait_s": 61})
