from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import trio
import trio.testing

from imagen_actors.config.settings import Config
from imagen_actors.core import events as ev
from imagen_actors.core.records import Transition
from imagen_actors.db.gateway import Gateway
from imagen_actors.observability.health import CRASH_VISIBLE_S
from imagen_actors.observability.metrics import WorkerMetrics, pending_since
from imagen_actors.observability.telemetry import Telemetry
from imagen_actors.worker.handle import WorkerHandle
from imagen_actors.worker.health import HealthBoard

T0 = datetime(2026, 1, 1, tzinfo=UTC)
JOB = uuid.uuid4()


def common(seconds: float) -> dict[str, Any]:
    return {"job_id": JOB, "occurred_at": T0 + timedelta(seconds=seconds), "actor": "t"}


def submitted() -> ev.JobSubmitted:
    return ev.JobSubmitted(
        **common(0), owner_user_id=uuid.uuid4(), prompt="p", backend="mock", width=8, height=8
    )


def claimed(at: float) -> ev.JobClaimed:
    return ev.JobClaimed(**common(at), attempt=1, lease_expires_at=T0)


def transition(*events: ev.Event, prior: tuple[ev.AnyEvent, ...] = ()) -> Transition:
    return Transition(state=None, events=events, prior=prior)  # type: ignore[arg-type]


def value(m: WorkerMetrics, name: str, **labels: str) -> float:
    got = m.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_a_job_through_all_stages_is_counted_once() -> None:
    """Claimed after 3 s, generated in 2 ticks, uploaded in 1: histograms and counters agree."""
    clock = iter([0.0, 10.0, 12.0, 13.0])
    m = WorkerMetrics("w", clock=lambda: next(clock))
    m.observe(transition(claimed(3), prior=(submitted(),)))
    m.observe(transition(ev.GenerationStarted(**common(4), backend="mock", seed=1)))
    succeeded = ev.GenerationSucceeded(
        **common(6),
        backend="mock",
        model="m",
        seed=1,
        mime="image/png",
        bytes=1,
        sha256="x",
        latency_ms=2000,
    )
    m.observe(transition(succeeded))
    m.observe(transition(ev.JobCompleted(**common(7), image_id=JOB)))
    assert value(m, "imagen_stage_seconds_sum", stage="queue_wait") == 3.0
    assert value(m, "imagen_stage_seconds_sum", stage="generation") == 2.0
    assert value(m, "imagen_stage_seconds_sum", stage="upload") == 1.0
    assert value(m, "imagen_gpu_busy_seconds_total") == 2.0
    assert value(m, "imagen_jobs_total", outcome="done") == 1.0
    assert value(m, "imagen_jobs_total", outcome="failed") == 0.0


def test_queue_wait_after_a_requeue_counts_from_its_backoff() -> None:
    """A requeued job waited since its retry_at, not since it was first submitted."""
    requeued = ev.JobRequeued(**common(10), reason="r", retry_at=T0 + timedelta(seconds=15))
    assert pending_since([submitted(), requeued]) == T0 + timedelta(seconds=15)
    assert pending_since([]) is None


def test_restarts_and_queue_depth_are_read_at_scrape_time() -> None:
    """Actor restarts come from the handle's dict; queue depth from the last status_counts."""
    restarts = {"claimer": 2}
    m = WorkerMetrics("w", restarts=lambda: restarts)
    m.set_queue_depth({"pending": 4})
    text = m.render().decode()
    assert 'imagen_actor_restarts_total{actor="claimer"} 2.0' in text
    assert 'imagen_queue_jobs{status="pending"} 4.0' in text
    assert 'imagen_queue_jobs{status="running"} 0.0' in text


async def test_readyz_is_503_before_listening() -> None:
    """Before LISTEN is up /readyz answers 503 and says why; /healthz is already 200."""
    fields: dict[str, Any] = {str(a.alias): None for a in attrs.fields(Gateway)}
    telemetry = Telemetry(Config(), Gateway(**fields), WorkerHandle("w"), env={})
    ready = await telemetry.respond("/readyz")
    assert ready.status == 503 and b"LISTEN not up yet" in ready.body
    assert (await telemetry.respond("/healthz")).status == 200
    assert (await telemetry.respond("/other")).status == 404


async def test_readyz_reports_a_crashed_actor_until_it_has_run_a_while(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An actor crash (a bug the supervisor restarted) makes /readyz 503 naming the actor and
    the error; the reason clears once the restarted actor has run CRASH_VISIBLE_S."""
    fields: dict[str, Any] = {str(a.alias): None for a in attrs.fields(Gateway)}
    handle = WorkerHandle("w")
    handle.listening.set()
    handle.listen_up = True
    telemetry = Telemetry(Config(), Gateway(**fields), handle, env={})
    handle.record_crash("claimer", KeyError("a bug"))
    ready = await telemetry.respond("/readyz")
    assert ready.status == 503
    assert b"actor claimer crashed" in ready.body and b"KeyError" in ready.body
    assert handle.restarts == {"claimer": 1}
    await trio.sleep(CRASH_VISIBLE_S + 1)
    assert handle.crash_problem() is None


async def test_readyz_and_metrics_name_an_unhealthy_dependency() -> None:
    """A backend that is down makes /readyz 503 naming it, since when and why, and its
    imagen_dependency_up gauge 0; once healthy again both clear (the database is not asked
    while a dependency explains the state)."""
    fields: dict[str, Any] = {str(a.alias): None for a in attrs.fields(Gateway)}
    handle = WorkerHandle("w")
    handle.listening.set()
    handle.listen_up = True
    board = HealthBoard(
        ["flux-schnell-local", "storage"], now=lambda: datetime(2026, 12, 1, 12, 3, tzinfo=UTC)
    )
    handle.dependencies = board
    telemetry = Telemetry(Config(), Gateway(**fields), handle, env={})
    board.mark_unhealthy("flux-schnell-local", "connection refused", fault="dependency")
    ready = await telemetry.respond("/readyz")
    assert ready.status == 503
    assert b"flux-schnell-local down since 12:03:00: connection refused" in ready.body
    text = telemetry.metrics.render().decode()
    assert 'imagen_dependency_up{dependency="flux-schnell-local"} 0.0' in text
    assert 'imagen_dependency_up{dependency="storage"} 1.0' in text
    board.mark_healthy("flux-schnell-local")
    assert handle.dependency_problem() is None
    assert (
        'imagen_dependency_up{dependency="flux-schnell-local"} 1.0'
        in telemetry.metrics.render().decode()
    )


def test_a_success_counts_the_backends_own_time_and_a_reuse_none() -> None:
    """The success is committed after the hand-over (the GPU may be on the next job): the
    generation lasts what the backend measured, and a kept image's reuse is no GPU time."""
    clock = iter([0.0, 9.0, 20.0, 21.0])
    m = WorkerMetrics("w", clock=lambda: next(clock))
    m.observe(transition(ev.GenerationStarted(**common(1), backend="mock", seed=1)))
    fields = {"backend": "mock", "model": "m", "seed": 1, "mime": "image/png", "bytes": 1}
    m.observe(
        transition(ev.GenerationSucceeded(**common(2), **fields, sha256="x", latency_ms=1500))
    )
    m.observe(transition(ev.GenerationStarted(**common(3), backend="mock", seed=1)))
    reused = ev.GenerationReused(**common(4), **fields, sha256="x", latency_ms=1500, path="/k")
    m.observe(transition(reused))
    assert value(m, "imagen_stage_seconds_sum", stage="generation") == 1.5
    assert value(m, "imagen_stage_seconds_count", stage="generation") == 1.0
    assert value(m, "imagen_gpu_busy_seconds_total") == 1.5


def test_only_local_backends_count_as_gpu_time() -> None:
    """A remote prediction (its own slot, elsewhere) is generation time but not GPU time:
    with slots several run at once, and the counter would outrun the clock."""
    clock = iter([0.0, 5.0, 10.0, 12.0])
    m = WorkerMetrics("w", clock=lambda: next(clock), gpu_backends=["mock"])
    m.observe(transition(ev.GenerationStarted(**common(1), backend="flux", seed=1)))
    failed = ev.GenerationFailed(**common(2), error="boom", error_class="transient")
    m.observe(transition(failed))
    m.observe(transition(ev.GenerationStarted(**common(3), backend="mock", seed=1)))
    m.observe(transition(ev.GenerationFailed(**common(4), error="boom", error_class="transient")))
    assert value(m, "imagen_stage_seconds_sum", stage="generation") == 5.0 + 2.0
    assert value(m, "imagen_gpu_busy_seconds_total") == 2.0
