"""The attempt fence: the Executor's and Uploader's decisions hold for one claim only.

A worker whose attempt's lease expired may claim the same job again (same worker id, next
attempt) before the old attempt's tasks notice; every decision of the old attempt must then
find the job no longer theirs.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core.errors import CancelRequestedError, LeaseLostError
from imagen_actors.core.fold import JobState, fold, replay
from imagen_actors.core.records import CompletionRows, Decide
from tests.support import events as support

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
JOB = uuid.UUID("77777777-7777-4777-8777-777777777777")
W = "host:w1"
IMAGE = uuid.UUID("88888888-8888-4888-8888-888888888888")


def run(state: JobState, decide: Decide, seconds: int) -> JobState:
    for event in decide(state, T0 + timedelta(seconds=seconds)):
        state = fold(state, event)
    return state


def reclaimed_by_the_same_worker() -> JobState:
    """Attempt 1 generated, its lease expired and was reaped, then W claimed attempt 2."""
    s = replay([support.submitted(JOB, T0)])
    s = run(s, dc.claim(W, 60), 1)
    s = run(s, dc.generation_succeeded(W, support.outcome(), 60, attempt=1), 3)
    s = run(s, dc.reap("reaper"), 200)
    s = run(s, dc.claim(W, 60), 201)
    assert (s.status, s.worker_id, s.attempts) == ("running", W, 2)
    return s


def fenced(attempt: int) -> dict[str, Decide]:
    """Every decision the Executor and the Uploader make for the claim ``attempt``."""
    return {
        "extend_lease": dc.extend_lease(W, 60, attempt=attempt),
        "record_progress": dc.record_progress(W, 3, 10, 60, attempt=attempt),
        "generation_succeeded": dc.generation_succeeded(W, support.outcome(), 60, attempt=attempt),
        "failure": dc.failure(W, "HTTP 503", "transient", "executor", attempt=attempt),
        "storage failure": dc.failure(
            W,
            "storage: gone",
            "transient",
            "uploader",
            attempt=attempt,
            record_generation_failed=False,
        ),
        "complete": dc.complete(
            W, support.image_row(JOB), attempt=attempt, local_path="/tmp/owl.png"
        )(CompletionRows(image_id=IMAGE)),
    }


@pytest.mark.parametrize("name", list(fenced(1)))
def test_a_stale_attempt_of_the_same_worker_is_refused(name: str) -> None:
    """Same worker id, older attempt: LeaseLostError naming both attempts, no events."""
    state = reclaimed_by_the_same_worker()
    with pytest.raises(LeaseLostError, match="running attempt 2, not attempt 1"):
        fenced(1)[name](state, T0 + timedelta(seconds=202))


@pytest.mark.parametrize("name", list(fenced(2)))
def test_the_current_attempt_goes_ahead(name: str) -> None:
    """The claim that holds the job decides as before."""
    state = reclaimed_by_the_same_worker()
    if name == "complete":  # an image needs this attempt's own generation first
        state = run(state, dc.generation_succeeded(W, support.outcome(), 60, attempt=2), 202)
    events: Any = fenced(2)[name](state, T0 + timedelta(seconds=203))
    assert events and all(e.worker_id == W for e in events)
    run(state, lambda _s, _now: events, 203)  # and they fold


def test_a_stale_attempt_cannot_give_the_job_back() -> None:
    """A shutdown give-back of attempt 1 leaves attempt 2's job alone (no refund either)."""
    state = reclaimed_by_the_same_worker()
    assert dc.abort_in_flight(W, "shutdown", attempt=1)(state, T0) == []
    (requeued,) = dc.abort_in_flight(W, "shutdown", attempt=2)(state, T0)
    assert isinstance(requeued, ev.JobRequeued) and requeued.refund_attempt


def test_a_repeated_completion_is_a_no_op_only_for_the_attempt_that_made_it() -> None:
    """Attempt 2 completed; its retry after a lost commit reply appends nothing, attempt 1's
    completion of the same image still raises."""
    s = reclaimed_by_the_same_worker()
    s = run(s, dc.generation_succeeded(W, support.outcome(), 60, attempt=2), 202)
    s = run(s, fenced(2)["complete"], 203)
    assert (s.status, s.image_id) == ("done", IMAGE)
    assert fenced(2)["complete"](s, T0) == []
    with pytest.raises(LeaseLostError):
        fenced(1)["complete"](s, T0)


def test_events_are_built_from_the_values_handed_in() -> None:
    """GenerationSucceeded and ImageStored carry the decision's clock, job, worker and the
    outcome/image values, not those of a template."""
    s = reclaimed_by_the_same_worker()
    now = T0 + timedelta(seconds=300)
    made = support.outcome(seed=9)
    succeeded, extended = dc.generation_succeeded(W, made, 60, attempt=2)(s, now)
    assert isinstance(succeeded, ev.GenerationSucceeded)
    assert (succeeded.job_id, succeeded.occurred_at, succeeded.worker_id) == (JOB, now, W)
    assert (succeeded.seed, succeeded.sha256, succeeded.metadata) == (9, made.sha256, {})
    assert isinstance(extended, ev.LeaseExtended)
    s = fold(fold(s, succeeded), extended)
    row = support.image_row(JOB, seed=9)
    rows = CompletionRows(image_id=IMAGE, usage_id=41)
    stored, completed, usage = dc.complete(
        W, row, attempt=2, local_path="/o/owl.png", cost_usd_estimate=0.25
    )(rows)(s, now)
    assert isinstance(usage, ev.UsageRecorded)
    assert (usage.usage_id, usage.cost_usd_estimate, usage.occurred_at) == (41, 0.25, now)
    assert isinstance(stored, ev.ImageStored) and isinstance(completed, ev.JobCompleted)
    assert (stored.occurred_at, stored.image_id, stored.storage_path) == (
        now,
        IMAGE,
        row.storage_path,
    )
    assert (stored.bytes, stored.sha256, stored.local_path) == (row.bytes, row.sha256, "/o/owl.png")
    assert completed.image_id == IMAGE


def test_the_job_row_shows_one_bounded_line_and_the_event_keeps_everything() -> None:
    """A failure whose text is a gateway's HTML page and a server path: imagen.jobs.error
    (the projection) gets the shown line; the events keep the full text for the operator."""
    s = reclaimed_by_the_same_worker()
    page = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>x</body></html>"
    error = f"storage: HTTP 502 from /srv/storage/app.js: {page}" + " detail" * 200
    events = list(dc.failure(W, error, "permanent", "uploader", attempt=2)(s, T0))
    s = replay(events, onto=s)
    failed = events[-1]
    assert isinstance(failed, ev.JobFailed) and failed.error == error
    assert s.error == failed.shown_error
    assert s.error is not None and len(s.error) <= 500 and "\n" not in s.error
    assert s.error.startswith("storage: HTTP 502 from <path>: (an HTML page titled '502")


def test_a_cancel_request_stops_the_work_and_ends_it_cancelled() -> None:
    """Once JobCancelRequested is in the stream, every renewal, start and success of the
    claim raises CancelRequestedError with the reason; `cancelled` then ends the job with it;
    a completion still goes through and says the cancel came too late."""
    s = reclaimed_by_the_same_worker()
    s = fold(
        s,
        ev.JobCancelRequested(
            job_id=JOB, occurred_at=T0 + timedelta(seconds=250), actor="cancel_job", reason="no"
        ),
    )
    for decide in (
        dc.extend_lease(W, 60, attempt=2),
        dc.record_progress(W, 1, 4, 60, attempt=2),
        dc.generation_succeeded(W, support.outcome(), 60, attempt=2),
    ):
        with pytest.raises(CancelRequestedError, match=r"cancel requested \(no\)") as caught:
            decide(s, T0)
        assert caught.value.reason == "no"
    (cancelled,) = dc.cancelled(W, attempt=2, actor="executor")(s, T0)
    assert isinstance(cancelled, ev.JobCancelled) and cancelled.reason == "no"
    assert fold(s, cancelled).status == "cancelled"
    with pytest.raises(LeaseLostError):
        dc.cancelled(W, attempt=1, actor="executor")(s, T0)  # the fence holds here too
