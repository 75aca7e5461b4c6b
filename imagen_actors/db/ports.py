"""What each actor needs from the database, as small protocols.

``Gateway`` satisfies all of them; ``LocalJobStore`` (no database) and the outage wrapper
satisfy ``JobStore``; tests hand in fakes. Actors are typed against these, never against
the concrete Gateway, so a fake needs only the methods its actor calls.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from imagen_actors.core import events as ev
from imagen_actors.core.records import (
    CompletionRows,
    Decide,
    DecideFor,
    ImageRow,
    Transition,
    UsageRow,
)


class Transitions(Protocol):
    async def transition(self, job_id: uuid.UUID, decide: Decide) -> Transition: ...


class JobStore(Transitions, Protocol):
    """The Executor, Uploader and UsageRecorder's store (Postgres, or a JSONL log)."""

    async def store_image_and_transition(
        self,
        image: ImageRow,
        decide: DecideFor[CompletionRows],
        usage: UsageRow | None = None,
    ) -> Transition: ...

    async def transition_reserving_key(
        self, job_id: uuid.UUID, decide: Decide, bucket: str, candidates: Sequence[str]
    ) -> tuple[Transition, tuple[str, uuid.UUID]]: ...

    async def job_error(self, job_id: uuid.UUID) -> str | None: ...


class ClaimQueue(Transitions, Protocol):
    """The Claimer's view of the queue."""

    async def claim(
        self,
        decide: Decide,
        *,
        backends: Sequence[str] | None = None,
        absent_after_s: float = ...,
        unserved_grace_s: float = ...,
    ) -> Transition | None: ...

    async def next_run_after(self) -> float | None: ...


class LeftoverStore(Transitions, Protocol):
    """The janitor's view: failed jobs' reserved keys and their streams."""

    async def failed_with_leftovers(self, limit: int, *, recent_only: bool) -> list[uuid.UUID]: ...

    async def reserved_image_keys(self, bucket: str, job_id: uuid.UUID) -> list[str]: ...

    async def storage_key_owner(self, bucket: str, key: str) -> uuid.UUID | None: ...

    async def tombstone_image_keys(self, bucket: str, job_id: uuid.UUID) -> None: ...

    async def tombstones_to_recheck(
        self, bucket: str, *, within_s: float, every_s: float, limit: int
    ) -> list[tuple[str, uuid.UUID]]: ...

    async def tombstone_checked(self, bucket: str, key: str) -> None: ...

    async def load_events(self, job_id: uuid.UUID) -> list[ev.AnyEvent]: ...


class ReapQueue(LeftoverStore, Protocol):
    """The Reaper's view: leases, the heartbeat, and (through the janitor) leftovers."""

    async def running_held_by(self, worker_id: str) -> list[uuid.UUID]: ...

    async def expired_leases(self, limit: int) -> list[uuid.UUID]: ...

    async def worker_seen(
        self,
        worker_id: str,
        backends: Sequence[str],
        *,
        starting: bool = False,
        health: Mapping[str, Any] | None = None,
    ) -> None: ...

    async def unhealthy_dependencies(self, within_s: float) -> list[Any]: ...

    async def live_workers_offering(self, backend: str, within_s: float) -> int: ...

    async def claim(
        self,
        decide: Decide,
        *,
        backends: Sequence[str] | None = None,
        absent_after_s: float = 600.0,
        unserved_grace_s: float = 600.0,
    ) -> Transition | None: ...
