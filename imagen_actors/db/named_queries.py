"""Conveniences over named SQL blocks (``imagen_actors/sql``), on top of the Gateway's
fetch primitives. The connection, transaction and bridge work stays in ``gateway``, the
only module that touches asyncpg."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any, Protocol


class _Fetches(Protocol):
    async def fetch(self, name: str, *args: Any) -> list[dict[str, Any]]: ...

    async def fetchrow(self, name: str, *args: Any) -> dict[str, Any] | None: ...

    async def fetchval(self, name: str, *args: Any) -> Any: ...


class NamedQueries:
    """Mixed into ``Gateway``, which supplies ``fetch``, ``fetchrow`` and ``fetchval``."""

    async def reserve_image_key(
        self: _Fetches, bucket: str, key: str, job_id: uuid.UUID
    ) -> uuid.UUID:
        """Reserve (bucket, key) for ``job_id``; the key's owner afterwards (maybe another job)."""
        owner: uuid.UUID = await self.fetchval("reserve_image_key", bucket, key, job_id)
        return owner

    async def reserved_image_keys(self: _Fetches, bucket: str, job_id: uuid.UUID) -> list[str]:
        """Every key ``job_id`` reserved in ``bucket``, oldest first."""
        return [r["storage_path"] for r in await self.fetch("reserved_image_keys", job_id, bucket)]

    async def worker_seen(
        self: _Fetches, worker_id: str, backends: Sequence[str], *, starting: bool = False
    ) -> None:
        """Record that ``worker_id`` is alive and offers ``backends`` (``imagen.workers``)."""
        await self.fetchval(
            "worker_seen",
            worker_id,
            list(backends),
            socket.gethostname(),
            os.getpid(),
            starting,
        )

    async def job_error(self: _Fetches, job_id: uuid.UUID) -> str | None:
        row = await self.fetchrow("load_job", job_id)
        return None if row is None else row["error"]
