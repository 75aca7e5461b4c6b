"""Kept images: a job whose upload failed on a storage outage keeps its image on the
host, and its retry uploads that file (after checking its sha256) instead of rendering
again. ``kept_generation`` finds it in the stream; ``reuse_generation`` records the reuse
(``GenerationReused``), restoring the attempt's generation outcome so ImageStored is legal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from imagen_actors.core import events as ev
from imagen_actors.core.decisions import _header, _held, lease_renewed, outcome_fields
from imagen_actors.core.fold import JobState
from imagen_actors.core.records import Decide


def kept_generation(
    stream: Sequence[ev.Event],
) -> tuple[ev.GenerationSucceeded, str] | None:
    """The image the last attempt generated and kept for its upload, and where: when the
    stream's last requeue (a storage outage) says it was kept. Else None: render anew."""
    requeue = next((e for e in reversed(stream) if isinstance(e, ev.JobRequeued)), None)
    if requeue is None or requeue.kept_image is None:
        return None
    succeeded = next((e for e in reversed(stream) if isinstance(e, ev.GenerationSucceeded)), None)
    return None if succeeded is None else (succeeded, requeue.kept_image)


def reuse_generation(
    worker_id: str,
    succeeded: ev.GenerationSucceeded,
    path: str,
    lease_s: float,
    *,
    attempt: int,
    actor: str = "executor",
) -> Decide:
    """This attempt uploads the kept image of an earlier one (its sha256 checked): the
    generation outcome is restored without a render, and the lease renewed for the upload."""

    def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        _held(state, worker_id, attempt)
        return [
            ev.GenerationReused(
                **_header(state, now, actor, worker_id), path=path, **outcome_fields(succeeded)
            ),
            lease_renewed(state, now, actor, worker_id, lease_s),
        ]

    return decide
