"""The kept streams: a transition may skip reloading a job only at the version it kept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from imagen_actors.core import decisions as dc
from imagen_actors.core.fold import replay
from imagen_actors.core.records import Decide, Transition
from imagen_actors.db.known_streams import KnownStreams
from tests.support import events as support

T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
W = "host:w1"


def advanced(t: Transition, decide: Decide, seconds: int = 1) -> Transition:
    new = tuple(decide(t.state, T0 + timedelta(seconds=seconds)))
    return Transition(replay(new, onto=t.state), new, (*t.prior, *t.events))


def submitted(job: uuid.UUID) -> Transition:
    event = support.submitted(job, T0)
    return Transition(replay([event]), (event,))


def test_a_kept_state_is_given_back_only_at_its_version() -> None:
    """The claim's state comes back at version 3 with the whole stream, never at another."""
    known = KnownStreams()
    job = uuid.uuid4()
    claimed = advanced(submitted(job), dc.claim(W, 60))
    known.committed(claimed)
    hit = known.get(job, claimed.state.version)
    assert hit is not None
    state, stream = hit
    assert state == claimed.state and state.version == 3
    assert [type(e).__name__ for e in stream] == ["JobSubmitted", "JobClaimed", "GenerationStarted"]
    assert replay(stream) == state
    assert known.get(job, claimed.state.version + 1) is None
    assert known.get(uuid.uuid4(), 3) is None


def test_finished_jobs_and_empty_transitions_keep_nothing() -> None:
    """A job that ends is dropped; a transition that appended nothing changes nothing."""
    known = KnownStreams()
    job = uuid.uuid4()
    claimed = advanced(submitted(job), dc.claim(W, 60))
    known.committed(claimed)
    known.committed(Transition(claimed.state, (), claimed.prior))
    assert known.get(job, claimed.state.version) is not None
    failed = advanced(claimed, dc.failure(W, "bad prompt", "permanent", "executor", attempt=1))
    assert failed.state.status == "failed"
    known.committed(failed)
    assert job not in known and len(known) == 0


def test_the_oldest_job_is_forgotten_past_capacity() -> None:
    """Bounded: the least recently written job goes first."""
    known = KnownStreams(capacity=2)
    jobs = [uuid.uuid4() for _ in range(3)]
    for job in jobs:
        known.committed(advanced(submitted(job), dc.claim(W, 60)))
    assert len(known) == 2
    assert jobs[0] not in known and jobs[1] in known and jobs[2] in known
