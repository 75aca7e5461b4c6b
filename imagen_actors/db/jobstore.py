"""A job store without a database.

``Gateway`` (Postgres) is the production ``db.ports.JobStore``. ``LocalJobStore`` keeps the same
transitions in memory and appends every event to a JSONL log, so ``generate`` runs the
very same actor code with no database at all and ``replay --log`` can read the result.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import trio

from imagen_actors.core import events as ev
from imagen_actors.core import fold as fl
from imagen_actors.core.errors import JobNotFoundError
from imagen_actors.core.records import (
    CompletionRows,
    Decide,
    DecideFor,
    ImageRow,
    Transition,
    UsageRow,
)
from imagen_actors.db.transactions import first_key_held


class KeyLedger:
    """Storage keys reserved without a database: a JSONL file of (bucket, key, job) under an
    exclusive ``flock``, so runs of ``generate`` and ``compare`` on one host never hand a key
    on (the database's ``imagen.storage_keys`` does the same job with one)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def reserve(self, bucket: str, key: str, job_id: uuid.UUID) -> tuple[str, uuid.UUID]:
        """The job's earlier key in ``bucket`` and itself, else ``key`` and its owner."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            owners: dict[str, uuid.UUID] = {}
            for line in fh.read().splitlines():
                b, k, j = msgspec.json.decode(line, type=tuple[str, str, uuid.UUID])
                if b != bucket:
                    continue
                if j == job_id:
                    return k, job_id
                owners.setdefault(k, j)
            if key in owners:
                return key, owners[key]
            fh.write(msgspec.json.encode((bucket, key, job_id)) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
            return key, job_id


class LocalJobStore:
    """In-memory fold + JSONL log; for a single process with no database."""

    def __init__(self, log_path: Path, *, keys: KeyLedger | None = None) -> None:
        self.log_path = log_path
        self._streams: dict[uuid.UUID, list[ev.Event]] = {}
        self._states: dict[uuid.UUID, fl.JobState] = {}
        self._images: dict[tuple[str, str], uuid.UUID] = {}
        self._keys = keys

    def _append(self, events: Sequence[ev.Event]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as fh:
            for e in events:
                fh.write(ev.encode(e) + b"\n")

    async def submit(self, submitted: ev.JobSubmitted) -> fl.JobState:
        state = fl.fold(None, submitted)
        self._streams[submitted.job_id] = [submitted]
        self._states[submitted.job_id] = state
        await trio.to_thread.run_sync(self._append, [submitted])
        return state

    async def transition(self, job_id: uuid.UUID, decide: Decide) -> Transition:
        before = self._states.get(job_id)
        if before is None:
            raise JobNotFoundError(f"no job {job_id} in {self.log_path}")
        prior = tuple(self._streams[job_id])
        new = tuple(decide(before, datetime.now(UTC)))
        after = fl.replay(new, onto=before)
        self._states[job_id] = after
        self._streams[job_id].extend(new)
        await trio.to_thread.run_sync(self._append, new)
        return Transition(after, new, prior)

    async def store_image_and_transition(
        self,
        image: ImageRow,
        decide: DecideFor[CompletionRows],
        usage: UsageRow | None = None,
    ) -> Transition:
        image_id = self._images.setdefault(
            (image.bucket, image.storage_path), uuid.uuid5(image.job_id, "image")
        )
        # No database, no usage row (``generate`` says so in its summary).
        return await self.transition(image.job_id, decide(CompletionRows(image_id=image_id)))

    async def transition_reserving_key(
        self, job_id: uuid.UUID, decide: Decide, bucket: str, candidates: Sequence[str]
    ) -> tuple[Transition, tuple[str, uuid.UUID]]:
        t = await self.transition(job_id, decide)

        async def reserve(key: str) -> tuple[str, uuid.UUID]:
            return await self.reserve_image_key(bucket, key, job_id)

        return t, await first_key_held(reserve, candidates, job_id)

    async def reserve_image_key(
        self, bucket: str, key: str, job_id: uuid.UUID
    ) -> tuple[str, uuid.UUID]:
        if self._keys is not None:
            return await trio.to_thread.run_sync(self._keys.reserve, bucket, key, job_id)
        for (b, k), owner in self._images.items():
            if b == bucket and owner == job_id:
                return k, job_id
        return key, self._images.setdefault((bucket, key), job_id)

    async def job_error(self, job_id: uuid.UUID) -> str | None:
        return self._states[job_id].error
