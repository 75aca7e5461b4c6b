"""PredictionCreated in the fold: the job's latest backend run, kept across requeues for the
next attempt to resume, forgotten by a retry; only the lease holder may record one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core import queue_decisions as qd
from imagen_actors.core.errors import LeaseLostError
from imagen_actors.core.fold import ExternalRun, IllegalTransitionError, JobState, fold, replay
from tests.support import events as support

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
JOB = uuid.UUID("55555555-5555-4555-8555-555555555555")
W, W2 = "host:w1", "host:w2"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(stream: list[ev.Event], state: JobState, decide: Any, when: datetime) -> JobState:
    for event in decide(state, when):
        stream.append(event)
        state = fold(state, event)
    return state


def started(stream: list[ev.Event], worker: str = W, attempt: int = 1) -> JobState:
    if not stream:
        stream.append(support.submitted(JOB, T0, backend="replicate-test"))
    state = replay(stream)
    return run(stream, state, dc.claim(worker, 60), at(attempt))


def test_prediction_created_is_remembered_and_bumps_only_version() -> None:
    stream: list[ev.Event] = []
    before = started(stream)
    after = run(stream, before, dc.prediction_created(W, "p1", attempt=1), at(2))
    (created,) = stream[-1:]
    assert isinstance(created, ev.PredictionCreated)
    assert (created.backend, created.external_id, created.worker_id) == ("replicate-test", "p1", W)
    assert after.prediction == ExternalRun(backend="replicate-test", id="p1", created_at=at(2))
    changed = {k for k, v in after.projection().items() if before.projection()[k] != v}
    assert changed == {"version", "updated_at"}
    assert replay(stream) == after


def test_the_prediction_outlives_a_requeue_and_the_next_one_replaces_it() -> None:
    """The worker died: requeue_own (or the Reaper) requeues, the next claim still sees the
    prediction (what the Executor offers the backend to resume); a new one replaces it."""
    stream: list[ev.Event] = []
    s = started(stream)
    s = run(stream, s, dc.prediction_created(W, "p1", attempt=1), at(2))
    s = run(stream, s, qd.reap(W, own=True), at(3))
    assert s.status == "pending"
    s = started(stream, W2, attempt=2)
    assert s.prediction is not None and s.prediction.id == "p1"
    s = run(stream, s, dc.prediction_created(W2, "p2", attempt=2), at(4))
    assert s.prediction is not None and (s.prediction.id, s.prediction.created_at) == ("p2", at(4))
    assert replay(stream) == s


def test_a_retry_forgets_the_prediction() -> None:
    stream: list[ev.Event] = []
    s = started(stream)
    s = run(stream, s, dc.prediction_created(W, "p1", attempt=1), at(2))
    s = run(stream, s, dc.failure(W, "nsfw", "permanent", "executor", attempt=1), at(3))
    assert s.status == "failed" and s.prediction is not None
    s = fold(s, ev.JobRetried(job_id=JOB, occurred_at=at(4), actor="sql"))
    assert (s.status, s.prediction) == ("pending", None)


def test_recorded_even_with_a_cancel_pending_but_only_by_the_holder() -> None:
    """The run exists (and is being stopped): the fact is recorded; a worker whose lease was
    handed on is refused."""
    stream: list[ev.Event] = []
    s = started(stream)
    s = fold(s, ev.JobCancelRequested(job_id=JOB, occurred_at=at(2), actor="sql"))
    s = run(stream, s, dc.prediction_created(W, "p1", attempt=1), at(3))
    assert s.prediction is not None
    with pytest.raises(LeaseLostError):
        dc.prediction_created(W2, "p2", attempt=1)(s, at(4))
    with pytest.raises(LeaseLostError):
        dc.prediction_created(W, "p2", attempt=2)(s, at(4))
    foreign = ev.PredictionCreated(
        job_id=JOB, occurred_at=at(4), actor="e", worker_id=W2, backend="x", external_id="p3"
    )
    with pytest.raises(IllegalTransitionError, match="lease is held by"):
        fold(s, foreign)
    pending = replay(stream[:1])
    with pytest.raises(IllegalTransitionError, match="allowed only when running"):
        fold(pending, foreign)
