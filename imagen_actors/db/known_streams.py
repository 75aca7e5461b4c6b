"""The streams this worker last committed, so its next transition need not read them again.

A transition used to load and replay the job's whole stream under the row lock. The worker
that wrote the last event already holds the state it folded to; this keeps it, keyed by
job, and a transition uses it only when the locked row's ``version`` equals the kept
state's: every append writes the projection's version in the same statement (schema 0009,
``append_and_project``) and seqs are unique per job, so an equal version means nobody else
has appended since, and the kept state is exactly what a replay would give. A different
version (another worker, the Reaper, a cancel from the UI) reads the stream as before.

Entries are put only after their transaction committed (a rolled-back transition must not
leave a version the database may later reach with other events), and a finished job is
dropped. Everything here runs on the database thread (``db.bridge``), never concurrently.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Final

from imagen_actors.core import events as ev
from imagen_actors.core import fold as fl
from imagen_actors.core.records import Transition

# Jobs in flight on one worker are a handful (one per slot, plus uploads); this bounds the
# memory of jobs that left the worker without a terminal event (requeued, handed on).
MAX_KNOWN: Final = 256
_FINISHED: Final = frozenset({"done", "failed", "cancelled"})


class KnownStreams:
    def __init__(self, capacity: int = MAX_KNOWN) -> None:
        self._capacity = capacity
        self._known: OrderedDict[uuid.UUID, tuple[fl.JobState, tuple[ev.Event, ...]]] = (
            OrderedDict()
        )

    def get(
        self, job_id: uuid.UUID, version: int
    ) -> tuple[fl.JobState, tuple[ev.Event, ...]] | None:
        """The kept state and stream of ``job_id`` if they are at ``version``, else None."""
        known = self._known.get(job_id)
        if known is None or known[0].version != version:
            return None
        return known

    def committed(self, t: Transition) -> None:
        """Keep the state a committed transition left (or drop it: finished, no events)."""
        job_id = t.state.id
        if not t.events:
            return
        if t.state.status in _FINISHED:
            self._known.pop(job_id, None)
            return
        self._known[job_id] = (t.state, (*t.prior, *t.events))
        self._known.move_to_end(job_id)
        while len(self._known) > self._capacity:
            self._known.popitem(last=False)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._known

    def __len__(self) -> int:
        return len(self._known)
