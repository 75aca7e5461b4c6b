"""The storage interface the Uploader writes through."""

from __future__ import annotations

from typing import Protocol

import attrs

from imagen_actors.core.records import Checked


@attrs.frozen
class StoredObject:
    bucket: str
    key: str
    location: str  # a path for local storage, a URL for remote ones


class ObjectStore(Protocol):
    bucket: str

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        """Store ``data`` under ``key``, overwriting an earlier attempt of the same job."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no object at ``key``
        (``replay --verify --objects``)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object at ``key``; one that is already gone is not an error."""
        ...

    async def check(self) -> Checked:
        """The preflight: the bucket exists and the key may write to it. Runs at worker
        start, as the health probe, and in ``config check``."""
        ...

    async def aclose(self) -> None: ...
