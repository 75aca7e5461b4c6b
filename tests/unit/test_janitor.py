"""Discarding a failed job's leftover objects: the event's fold rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core.fold import IllegalTransitionError, fold, replay
from tests.support import events as support

T0 = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
JOB = uuid.UUID("55555555-5555-4555-8555-555555555555")
W = "host:w1"


def stream() -> list[ev.Event]:
    return [support.submitted(JOB, T0)]


def failed() -> list[ev.Event]:
    return [
        *stream()[:1],
        ev.JobFailed(
            job_id=JOB, occurred_at=T0, actor="reaper", error="e", error_class="transient"
        ),
    ]


def test_discard_is_recorded_once_and_only_for_a_failed_job() -> None:
    """ImageDiscarded folds onto failed (not projected), at most once; the decision is idempotent."""
    state = replay(failed())
    decide = dc.discard_objects(W, "b", ["k1", "k2"])
    (event,) = decide(state, T0)
    assert isinstance(event, ev.ImageDiscarded) and event.storage_paths == ("k1", "k2")
    after = fold(state, event)
    assert after.objects_discarded and after.version == state.version + 1
    assert after.projection() | {"version": 0, "updated_at": None} == state.projection() | {
        "version": 0,
        "updated_at": None,
    }
    assert decide(after, T0) == []
    with pytest.raises(IllegalTransitionError, match="already discarded"):
        fold(after, event)
    pending = replay(stream())
    assert decide(pending, T0) == []
    with pytest.raises(IllegalTransitionError, match="ImageDiscarded is not allowed"):
        fold(pending, event)
    assert ev.decode(ev.encode(event)) == event
