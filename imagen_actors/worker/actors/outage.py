"""Ride through a database outage (a restart, a failover, a dropped connection) while
holding a job, instead of crashing and leaving the job ``running`` until its lease expires.

``OutageTolerantStore`` wraps the job store the Executor and Uploader write through: a call
that fails with ``DatabaseUnavailableError`` is retried with capped backoff for up to
``budget_s`` (the lease: after that the Reaper may have handed the job on anyway), then the
error propagates as before. Only "unavailable" is retried: any other database error is
not about the connection and would fail again.

Retrying a transition is safe even when the first try committed and only its reply was
lost: every decision re-reads the job under its lock, so a repeat either appends a harmless
duplicate (another GenerationSucceeded or LeaseExtended; a key reservation returns the
key the job already holds) or finds the job no longer ours
(``LeaseLostError``), which the actors already handle.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import trio

from imagen_actors.core.backoff import Backoff
from imagen_actors.core.errors import DatabaseUnavailableError
from imagen_actors.core.records import (
    CompletionRows,
    Decide,
    DecideFor,
    ImageRow,
    Transition,
    UsageRow,
)
from imagen_actors.db.ports import JobStore

RETRY: Final = Backoff(base_s=0.1, cap_s=2.0)
T = TypeVar("T")
log = logging.getLogger("imagen_actors.outage")


class OutageTolerantStore:
    """A JobStore that retries calls through a database outage of up to ``budget_s``."""

    def __init__(self, inner: JobStore, *, budget_s: float) -> None:
        self._inner = inner
        self.budget_s = budget_s

    async def _retry(self, what: str, subject: str, call: Callable[[], Awaitable[T]]) -> T:
        deadline = trio.current_time() + self.budget_s
        failures = 0
        while True:
            try:
                return await call()
            except DatabaseUnavailableError as exc:
                failures += 1
                delay = RETRY.delay_s(failures)
                if trio.current_time() + delay > deadline:
                    raise
                log.warning("%s: %s failed (%s); retrying in %.1fs", subject, what, exc, delay)
            await trio.sleep(delay)

    async def transition(self, job_id: uuid.UUID, decide: Decide) -> Transition:
        return await self._retry(
            "transition", f"job {job_id}", lambda: self._inner.transition(job_id, decide)
        )

    async def store_image_and_transition(
        self,
        image: ImageRow,
        decide: DecideFor[CompletionRows],
        usage: UsageRow | None = None,
    ) -> Transition:
        return await self._retry(
            "completion",
            f"job {image.job_id}",
            lambda: self._inner.store_image_and_transition(image, decide, usage),
        )

    async def transition_reserving_key(
        self, job_id: uuid.UUID, decide: Decide, bucket: str, candidates: Sequence[str]
    ) -> tuple[Transition, tuple[str, uuid.UUID]]:
        return await self._retry(
            "transition and key reservation",
            f"job {job_id}",
            lambda: self._inner.transition_reserving_key(job_id, decide, bucket, candidates),
        )

    async def job_error(self, job_id: uuid.UUID) -> str | None:
        return await self._retry(
            "error lookup", f"job {job_id}", lambda: self._inner.job_error(job_id)
        )
