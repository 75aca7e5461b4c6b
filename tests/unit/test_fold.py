from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core.errors import LeaseLostError
from imagen_actors.core.fold import (
    GenerationOutcome,
    IllegalTransitionError,
    JobState,
    fold,
    replay,
)
from imagen_actors.core.records import CompletionRows
from tests.support import events as support

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
JOB = uuid.UUID("44444444-4444-4444-8444-444444444444")
W = "host:w1"


def submitted(max_attempts: int = 3) -> ev.JobSubmitted:
    return support.submitted(JOB, T0, max_attempts=max_attempts)


def apply(state: JobState, decide: Any, at: datetime) -> JobState:
    for e in decide(state, at):
        state = fold(state, e)
    return state


def outcome() -> GenerationOutcome:
    return support.outcome()


def complete(worker: str, attempt: int, image_id: uuid.UUID, usage_id: int | None = None) -> Any:
    """The Uploader's completion of attempt ``attempt`` once its images row is ``image_id``
    (and its usage row ``usage_id``, inserted in the same transaction)."""
    rows = CompletionRows(image_id=image_id, usage_id=usage_id)
    return dc.complete(
        worker, support.image_row(JOB), attempt=attempt, local_path=None, cost_usd_estimate=0.01
    )(rows)


def test_happy_path_ends_done_with_image() -> None:
    """submitted -> claimed+started -> succeeded -> stored+completed+usage is legal."""
    s = fold(None, submitted())
    s = apply(s, dc.claim(W, 60), T0 + timedelta(seconds=1))
    assert (s.status, s.attempts, s.worker_id) == ("running", 1, W)
    assert s.lease_expires_at == T0 + timedelta(seconds=61)
    s = apply(s, dc.generation_succeeded(W, outcome(), 60, attempt=1), T0 + timedelta(seconds=3))
    image = uuid.uuid4()
    s = apply(s, complete(W, 1, image, usage_id=1), T0 + timedelta(seconds=4))
    assert (s.status, s.image_id, s.lease_expires_at) == ("done", image, None)
    assert s.finished_at == T0 + timedelta(seconds=4)
    assert s.version == 8 and s.usage_recorded


def test_completed_on_pending_job_is_illegal() -> None:
    """JobCompleted without a claim raises the typed error."""
    s = fold(None, submitted())
    with pytest.raises(IllegalTransitionError, match="JobCompleted is not allowed"):
        fold(s, ev.JobCompleted(job_id=JOB, occurred_at=T0, actor="x", worker_id=W, image_id=JOB))


def test_nothing_but_usage_after_terminal() -> None:
    """After failed, only usage events are accepted."""
    s = fold(None, submitted())
    s = fold(
        s, ev.JobFailed(job_id=JOB, occurred_at=T0, actor="x", error="e", error_class="permanent")
    )
    for e in (
        ev.JobClaimed(
            job_id=JOB, occurred_at=T0, actor="c", worker_id=W, attempt=1, lease_expires_at=T0
        ),
        ev.JobCancelled(job_id=JOB, occurred_at=T0, actor="c", reason="r"),
        ev.JobFailed(job_id=JOB, occurred_at=T0, actor="x", error="e", error_class="permanent"),
    ):
        with pytest.raises(IllegalTransitionError):
            fold(s, e)
    assert fold(s, ev.UsageFailed(job_id=JOB, occurred_at=T0, actor="u", error="x")).version == 3


def test_transient_failure_requeues_with_backoff_then_fails_at_max() -> None:
    """Transient errors requeue (with retry_at) until max_attempts, then fail naming the count."""
    s = fold(None, submitted(max_attempts=2))
    s = apply(s, dc.claim(W, 60), T0)
    s = apply(s, dc.failure(W, "HTTP 503", "transient", "executor", attempt=1, rng=lambda: 0.5), T0)
    assert s.status == "pending" and s.error == "HTTP 503"
    # Full jitter: the draw 0.5 waits half the first ceiling (2 s).
    assert s.run_after == T0 + timedelta(seconds=1.0)
    s = apply(s, dc.claim(W, 60), T0)
    s = apply(s, dc.failure(W, "HTTP 503", "transient", "executor", attempt=2), T0)
    assert s.status == "failed" and s.error == "HTTP 503 (gave up after 2 attempts)"


def test_permanent_failure_fails_at_once() -> None:
    """A permanent error fails on the first attempt."""
    s = apply(fold(None, submitted()), dc.claim(W, 60), T0)
    s = apply(s, dc.failure(W, "unknown backend", "permanent", "executor", attempt=1), T0)
    assert s.status == "failed" and s.attempts == 1


def test_a_retried_completion_that_already_committed_is_a_no_op() -> None:
    """The commit's reply was lost in a database restart and the Uploader retries: its own
    completion is already there, so nothing is appended (and no LeaseLostError, which would
    have dropped the job's usage row); anyone else's completion still raises."""
    s = apply(fold(None, submitted()), dc.claim(W, 60), T0)
    s = apply(s, dc.generation_succeeded(W, outcome(), 60, attempt=1), T0)
    image = uuid.uuid4()
    s = apply(s, complete(W, 1, image), T0)
    assert s.status == "done"
    assert complete(W, 1, image)(s, T0) == []
    with pytest.raises(LeaseLostError):
        complete("other:w", 1, image)(s, T0)
    with pytest.raises(LeaseLostError):
        complete(W, 1, uuid.uuid4())(s, T0)


def test_other_worker_cannot_advance_a_job() -> None:
    """A worker whose lease was handed on gets LeaseLostError, not a silent write."""
    s = apply(fold(None, submitted()), dc.claim(W, 60), T0)
    with pytest.raises(LeaseLostError):
        dc.extend_lease("other:w", 60, attempt=1)(s, T0)
    with pytest.raises(IllegalTransitionError, match="lease is held by"):
        fold(
            s,
            ev.GenerationStarted(
                job_id=JOB, occurred_at=T0, actor="e", worker_id="x", backend="mock", seed=1
            ),
        )


def test_reaper_leaves_live_lease_and_requeues_expired() -> None:
    """reap() is a no-op before expiry and requeues after; the last attempt fails instead."""
    s = apply(fold(None, submitted(max_attempts=1)), dc.claim(W, 60), T0)
    assert dc.reap("r")(s, T0 + timedelta(seconds=59)) == []
    (e,) = dc.reap("r")(s, T0 + timedelta(seconds=61))
    assert isinstance(e, ev.JobFailed) and "lease expired after 1 attempt (" in e.error
    s2 = apply(fold(None, submitted(max_attempts=3)), dc.claim(W, 60), T0)
    (e2,) = dc.reap("r")(s2, T0 + timedelta(seconds=61))
    assert isinstance(e2, ev.JobRequeued)


def test_shutdown_abort_refunds_the_attempt() -> None:
    """An operator abort requeues without using up an attempt, even on the last one."""
    s = apply(fold(None, submitted(max_attempts=1)), dc.claim(W, 60), T0)
    s = apply(s, dc.abort_in_flight(W, "second signal", attempt=1), T0)
    assert (s.status, s.attempts) == ("pending", 0)


def test_backoff_grows_and_is_capped() -> None:
    """Retry delays are full jitter under a ceiling that doubles per attempt up to 60 s."""
    delays = [dc.retry_delay_s(a, rng=lambda: 0.5) for a in range(1, 10)]
    assert delays[:3] == [1.0, 2.0, 4.0]
    assert max(delays) == 30.0
    assert dc.retry_delay_s(3, rng=lambda: 0.0) == 0.0


def test_replay_of_empty_stream_is_an_error() -> None:
    """replay() refuses an empty stream rather than inventing a job."""
    with pytest.raises(ValueError, match="empty"):
        replay([])


class JobMachine(RuleBasedStateMachine):
    """Random walks through every decision: fold never reaches an inconsistent state."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[ev.Event] = [submitted(max_attempts=3)]
        self.state: JobState = fold(None, self.events[0])
        self.t = T0

    def _do(self, decide: Any) -> None:
        """One transition as the gateway runs it: decide, fold every new event, then append
        them all; a refused decision or an illegal event leaves the job exactly as it was."""
        self.t += timedelta(seconds=1)
        before = self.state
        try:
            new = list(decide(self.state, self.t))
        except LeaseLostError:
            # Decisions refuse only with LeaseLostError, and only for a job this worker
            # does not hold; an IllegalTransitionError here would be a bug in decide.
            assert (self.state.status, self.state.worker_id) != ("running", W)
            return
        after = before
        try:
            for e in new:
                after = fold(after, e)
        except IllegalTransitionError as exc:
            # Every rule's decision is legal in the states its precondition allows: a
            # rejected event (and with it a partial transition the database would roll back)
            # is a bug in a decision or in the fold.
            raise AssertionError(f"transition {new!r} rejected: {exc}") from exc
        self.events.extend(new)
        self.state = after

    @precondition(lambda self: self.state.status == "pending")
    @rule()
    def claim(self) -> None:
        self._do(dc.claim(W, 60))

    @rule()
    def succeed(self) -> None:
        self._do(dc.generation_succeeded(W, outcome(), 60, attempt=self.state.attempts))

    @rule(transient=st.booleans())
    def fail(self, transient: bool) -> None:
        self._do(
            dc.failure(
                W,
                "e",
                "transient" if transient else "permanent",
                "executor",
                attempt=self.state.attempts,
                rng=lambda: 0.0,
            )
        )

    @precondition(lambda self: self.state.generation is not None)
    @rule(with_usage=st.booleans())
    def complete(self, with_usage: bool) -> None:
        usage_id = 1 if with_usage else None
        self._do(complete(W, self.state.attempts, uuid.uuid4(), usage_id))

    @rule(seconds=st.integers(0, 120))
    def reap(self, seconds: int) -> None:
        self.t += timedelta(seconds=seconds)
        self._do(dc.reap("reaper"))

    @rule()
    def abort(self) -> None:
        self._do(dc.abort_in_flight(W, "signal", attempt=self.state.attempts))

    @invariant()
    def consistent(self) -> None:
        s = self.state
        assert s.version == len(self.events)
        assert replay(self.events) == s
        assert 0 <= s.attempts <= s.max_attempts
        if s.status == "running":
            assert s.worker_id is not None and s.lease_expires_at is not None
        else:
            assert s.lease_expires_at is None
        if s.status == "done":
            assert s.image_id is not None and s.finished_at is not None
        if s.status == "failed":
            assert s.error
        if s.status == "pending":
            assert s.worker_id is None and s.image_id is None


TestJobMachine = JobMachine.TestCase
TestJobMachine.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
