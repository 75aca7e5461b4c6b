"""What actors send each other over Trio memory channels: msgspec structs wrapping events."""

from __future__ import annotations

import msgspec

from imagen_actors.core import events as ev


class Wake(msgspec.Struct, frozen=True):
    """Something may be claimable: a NOTIFY arrived, the safety poll fired, or we reconnected."""

    reason: str


class ClaimedWork(msgspec.Struct, frozen=True, kw_only=True):
    """A claimed job handed from the Claimer to the Executor."""

    submitted: ev.JobSubmitted
    # Its worker_id and attempt fence every decision the Executor makes for this job.
    claimed: ev.JobClaimed
    # An earlier attempt's image kept for upload (its GenerationSucceeded, and the file):
    # the Executor re-uploads it after checking its sha256 instead of rendering again.
    kept: tuple[ev.GenerationSucceeded, str] | None = None


class GeneratedImage(msgspec.Struct, frozen=True, kw_only=True):
    """A finished generation handed from the Executor to the Uploader."""

    submitted: ev.JobSubmitted
    # The same claim: the Uploader's decisions are fenced by its worker_id and attempt too.
    claimed: ev.JobClaimed
    succeeded: ev.GenerationSucceeded
    image: bytes
    style: str | None = None
    workflow: str | None = None


class ImageCompleted(msgspec.Struct, frozen=True, kw_only=True):
    """What ``upload_one`` reports of a completed job (``generate`` prints it)."""

    submitted: ev.JobSubmitted
    succeeded: ev.GenerationSucceeded
    completed: ev.JobCompleted
    image_path: str
