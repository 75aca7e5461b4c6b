"""What actors send each other over Trio memory channels: msgspec structs wrapping events."""

from __future__ import annotations

import msgspec

from imagen_actors.core import events as ev
from imagen_actors.core import kept
from imagen_actors.core.fold import ExternalRun, GenerationOutcome
from imagen_actors.core.records import Decide, Transition


class Wake(msgspec.Struct, frozen=True):
    """Something may be claimable: a NOTIFY arrived, the safety poll fired, or we reconnected."""

    reason: str


class ClaimedWork(msgspec.Struct, frozen=True, kw_only=True):
    """A claimed job handed from the Claimer to the Executor."""

    submitted: ev.JobSubmitted
    # Its worker_id and attempt fence every decision the Executor makes for this job.
    claimed: ev.JobClaimed
    # Recorded by the claim: the seed this attempt renders with.
    started: ev.GenerationStarted
    # An earlier attempt's image kept for upload (its GenerationSucceeded, and the file):
    # the Executor re-uploads it after checking its sha256 instead of rendering again.
    kept: tuple[ev.GenerationSucceeded, str] | None = None
    # The latest run an earlier attempt started on the backend's own service (the fold
    # keeps it across requeues): offered to the backend to resume.
    resume: ExternalRun | None = None

    @classmethod
    def from_claim(cls, claim: Transition) -> ClaimedWork:
        """The work a committed claim (``decisions.claim``) hands to an Executor."""
        (claimed,) = [e for e in claim.events if isinstance(e, ev.JobClaimed)]
        (started,) = [e for e in claim.events if isinstance(e, ev.GenerationStarted)]
        submitted = claim.prior[0]
        assert isinstance(submitted, ev.JobSubmitted)
        return cls(
            submitted=submitted,
            claimed=claimed,
            started=started,
            kept=kept.kept_generation(claim.prior),
            resume=claim.state.prediction,
        )


class GeneratedImage(msgspec.Struct, frozen=True, kw_only=True):
    """A finished generation handed from the Executor to the Uploader, not yet recorded:
    the Uploader commits ``record`` (GenerationSucceeded, or GenerationReused for a kept
    image) together with the image's key reservation, so the Executor can take the next job
    without waiting for a commit."""

    submitted: ev.JobSubmitted
    # The same claim: the Uploader's decisions are fenced by its worker_id and attempt too.
    claimed: ev.JobClaimed
    outcome: GenerationOutcome
    record: Decide
    image: bytes
    style: str | None = None
    workflow: str | None = None


class ImageCompleted(msgspec.Struct, frozen=True, kw_only=True):
    """What ``upload_one`` reports of a completed job (``generate`` prints it)."""

    submitted: ev.JobSubmitted
    outcome: GenerationOutcome
    completed: ev.JobCompleted
    image_path: str
