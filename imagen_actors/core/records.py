"""The records a transaction takes and gives back: plain data, no I/O.

Actors build these and hand them to a job store (``db.gateway.Gateway`` or
``db.jobstore.LocalJobStore``); the store writes them in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import attrs

from imagen_actors.core import events as ev
from imagen_actors.core import fold as fl
from imagen_actors.core.errors import Fault

RowId = TypeVar("RowId")

Decide = Callable[[fl.JobState, datetime], Sequence[ev.Event]]
"""Pure: given the locked job's state and the transaction's clock, the events to append."""
DecideFor = Callable[[RowId], Decide]
"""The decision for a row the same transaction inserts first (``DecideFor[uuid.UUID]`` for
imagen.images, ``DecideFor[int]`` for mai.imagen_usage): the store inserts the row, then
calls this with the row's id for the ``Decide`` it applies."""


@attrs.frozen
class Checked:
    """What a preflight check of a dependency found (``Backend.check``, ``ObjectStore.check``):
    ``ok``, or why not and whose fault (``dependency``: down; ``configuration``: set up
    wrong). The same check runs at worker start, as the health probe, in ``backends`` and in
    ``config check``."""

    ok: bool
    detail: str  # "ok", "not configured (set REPLICATE_API_TOKEN)", "unreachable (...)"
    fault: Fault | None = None

    @classmethod
    def down(cls, detail: str) -> Checked:
        return cls(False, detail, "dependency")

    @classmethod
    def misconfigured(cls, detail: str) -> Checked:
        return cls(False, detail, "configuration")


@attrs.frozen
class Transition:
    state: fl.JobState
    events: tuple[ev.Event, ...]
    # The stream as it stood before this transition (already loaded under the lock).
    prior: tuple[ev.Event, ...] = ()


@attrs.frozen(kw_only=True)
class NewJob:
    """A job as the owner UI INSERTs it (``submit``, and ``generate`` with a database)."""

    owner_user_id: uuid.UUID
    prompt: str
    backend: str
    width: int
    height: int
    style: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    opts: dict[str, Any] | None = None
    max_attempts: int = 3

    def columns(self) -> tuple[Any, ...]:
        """In the order of the ``insert_job`` query's parameters."""
        return (
            self.owner_user_id,
            self.prompt,
            self.backend,
            self.width,
            self.height,
            self.style,
            self.negative_prompt,
            self.seed,
            self.steps,
            self.opts,
            self.max_attempts,
        )


@attrs.frozen
class ImageRow:
    owner_user_id: uuid.UUID
    job_id: uuid.UUID
    prompt: str
    backend: str
    model: str
    seed: int
    width: int
    height: int
    bucket: str
    storage_path: str
    mime: str
    bytes: int
    sha256: str
    metadata: dict[str, Any]

    def columns(self) -> tuple[Any, ...]:
        """In the order of the ``upsert_image`` query's parameters."""
        return attrs.astuple(self, recurse=False)


@attrs.frozen
class CompletionRows:
    """The ids of the rows a completing transaction inserts before it decides: the
    ``imagen.images`` row, and the ``mai.imagen_usage`` row when usage is recorded."""

    image_id: uuid.UUID
    usage_id: int | None = None
    # Why the usage row was refused (the completion then goes ahead without it).
    usage_error: str | None = None


@attrs.frozen
class UsageRow:
    backend: str
    model: str
    seed: int | None
    prompt_hash: str
    latency_ms: int
    cost_usd_estimate: float
    caller: str
    job_id: uuid.UUID | None

    def columns(self) -> tuple[Any, ...]:
        """In the order of the ``insert_usage`` query's parameters."""
        return attrs.astuple(self, recurse=False)
