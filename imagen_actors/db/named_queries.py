"""Named methods over the SQL blocks in ``db/sql``, on top of the Gateway's fetch primitives.

Actors call these (``next_run_after()``, ``expired_leases(limit)``, ...) through the small
protocols in ``db/ports``; none of them names a query or passes positional SQL arguments.
The connection, transaction and bridge work stays in ``gateway``, the only asyncpg importer.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from imagen_actors.core.records import NewJob


class _Fetches(Protocol):
    async def fetch(self, name: str, *args: Any) -> list[dict[str, Any]]: ...

    async def fetchrow(self, name: str, *args: Any) -> dict[str, Any] | None: ...

    async def fetchval(self, name: str, *args: Any) -> Any: ...


class NamedQueries:
    """Mixed into ``Gateway``, which supplies ``fetch``, ``fetchrow`` and ``fetchval``."""

    # ---- the queue -----------------------------------------------------------------

    async def insert_job(self: _Fetches, job: NewJob) -> uuid.UUID:
        """INSERT a job exactly as the owner UI does; its id."""
        job_id: uuid.UUID = await self.fetchval("insert_job", *job.columns())
        return job_id

    async def next_run_after(self: _Fetches) -> float | None:
        """Seconds until the earliest backed-off pending job becomes claimable, or None."""
        seconds: float | None = await self.fetchval("next_run_after")
        return seconds

    async def running_held_by(self: _Fetches, worker_id: str) -> list[uuid.UUID]:
        """Running jobs whose lease ``worker_id`` holds."""
        return [r["id"] for r in await self.fetch("running_held_by", worker_id)]

    async def expired_leases(self: _Fetches, limit: int) -> list[uuid.UUID]:
        """Up to ``limit`` running jobs whose lease has expired, the oldest expiry first."""
        return [r["id"] for r in await self.fetch("expired_leases", limit)]

    async def job_error(self: _Fetches, job_id: uuid.UUID) -> str | None:
        row = await self.fetchrow("load_job", job_id)
        return None if row is None else row["error"]

    async def status_counts(self: _Fetches) -> dict[str, int]:
        """Jobs per status (only statuses that have jobs)."""
        return {r["status"]: r["n"] for r in await self.fetch("status_counts")}

    async def cancel_job(self: _Fetches, job_id: uuid.UUID, reason: str | None) -> str:
        """``imagen.cancel_job``: the job's status after the call."""
        status: str = await self.fetchval("cancel_job", job_id, reason)
        return status

    async def retry_job(self: _Fetches, job_id: uuid.UUID) -> str:
        """``imagen.retry_job``: the job's status after the call (pending)."""
        status: str = await self.fetchval("retry_job", job_id)
        return status

    # ---- storage keys and leftovers ------------------------------------------------

    async def reserve_image_key(
        self: _Fetches, bucket: str, key: str, job_id: uuid.UUID
    ) -> tuple[str, uuid.UUID]:
        """Reserve (bucket, key) for ``job_id`` unless it reserved a key there before.

        Returns (key, owner): the job's earlier key and itself, or ``key`` and whoever owns it
        now (``job_id`` when it was free; another job, or a failed job's tombstone, if not).
        """
        row = await self.fetchrow("reserve_image_key", bucket, key, job_id)
        assert row is not None  # one of the two branches always returns the row
        return row["storage_path"], row["job_id"]

    async def reserved_image_keys(self: _Fetches, bucket: str, job_id: uuid.UUID) -> list[str]:
        """Every key ``job_id`` reserved in ``bucket``, oldest first."""
        return [r["storage_path"] for r in await self.fetch("reserved_image_keys", job_id, bucket)]

    async def storage_key_owner(self: _Fetches, bucket: str, key: str) -> uuid.UUID | None:
        """The job that reserved (bucket, key), or None when nobody holds it."""
        owner: uuid.UUID | None = await self.fetchval("storage_key_owner", bucket, key)
        return owner

    async def tombstone_image_keys(self: _Fetches, bucket: str, job_id: uuid.UUID) -> None:
        """Mark ``job_id``'s keys in ``bucket`` discarded; they stay reserved to it for good."""
        await self.fetchval("tombstone_image_keys", job_id, bucket)

    async def tombstones_to_recheck(
        self: _Fetches, bucket: str, *, within_s: float, every_s: float, limit: int
    ) -> list[tuple[str, uuid.UUID]]:
        """Tombstoned keys discarded within ``within_s`` not checked for ``every_s``."""
        rows = await self.fetch("tombstones_to_recheck", bucket, within_s, every_s, limit)
        return [(r["storage_path"], r["job_id"]) for r in rows]

    async def tombstone_checked(self: _Fetches, bucket: str, key: str) -> None:
        await self.fetchval("tombstone_checked", bucket, key)

    async def failed_with_leftovers(
        self: _Fetches, limit: int, *, recent_only: bool
    ) -> list[uuid.UUID]:
        """Failed jobs that generated an image and whose objects are not discarded yet;
        ``recent_only`` looks at the last hour's failures only."""
        return [r["id"] for r in await self.fetch("failed_with_leftovers", limit, recent_only)]

    # ---- workers -------------------------------------------------------------------

    async def offered_backends(self: _Fetches) -> list[str]:
        """Every backend any worker has ever offered, by name."""
        return [r["backend"] for r in await self.fetch("offered_backends")]

    async def live_workers_offering(self: _Fetches, backend: str, within_s: float) -> int:
        """How many workers seen within ``within_s`` seconds offer ``backend``."""
        n: int = await self.fetchval("live_workers_offering", backend, within_s)
        return n

    async def worker_seen(
        self: _Fetches,
        worker_id: str,
        backends: Sequence[str],
        *,
        starting: bool = False,
        health: Mapping[str, Any] | None = None,
    ) -> None:
        """Record that ``worker_id`` is alive and offers ``backends`` (``imagen.workers``),
        with its unhealthy dependencies (``HealthBoard.snapshot``; none: all up)."""
        await self.fetchval(
            "worker_seen",
            worker_id,
            list(backends),
            socket.gethostname(),
            os.getpid(),
            starting,
            dict(health or {}),
        )

    async def unhealthy_dependencies(self: _Fetches, within_s: float) -> list[Any]:
        """(worker_id, backends, dependency, fault, reason, since) of every dependency a
        worker seen within ``within_s`` reports unhealthy."""
        return list(await self.fetch("unhealthy_dependencies", within_s))
