"""Objects as files: ``<root>/<bucket>/<key>``, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath

import trio

from imagen_actors.core.errors import StorageError
from imagen_actors.core.records import Checked
from imagen_actors.storage.base import StoredObject


def safe_relative(key: str) -> PurePosixPath:
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or key.endswith("/"):
        raise StorageError(
            f"invalid object key {key!r}: must be a relative file path without '..'",
            error_class="permanent",
        )
    return path


def write_atomic(target: Path, data: bytes, *, durable: bool = True) -> None:
    """Write via a temp file + rename, so a reader never sees half a PNG; ``durable`` also
    fsyncs it before the rename, so a power cut cannot leave a torn one either."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _probe_writable(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-check-")
    os.close(fd)
    Path(tmp).unlink()


class LocalStore:
    def __init__(self, root: Path, bucket: str) -> None:
        self.root = root
        self.bucket = bucket

    def path_for(self, key: str) -> Path:
        return self.root / self.bucket / safe_relative(key)

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        target = self.path_for(key)
        try:
            await trio.to_thread.run_sync(write_atomic, target, data)
        except OSError as exc:
            raise StorageError(f"could not write {target}: {exc.strerror or exc}") from exc
        return StoredObject(self.bucket, key, str(target))

    async def exists(self, key: str) -> bool:
        return await trio.Path(self.path_for(key)).exists()

    async def get(self, key: str) -> bytes | None:
        target = self.path_for(key)
        try:
            return await trio.Path(target).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"could not read {target}: {exc.strerror or exc}") from exc

    async def delete(self, key: str) -> None:
        target = self.path_for(key)
        try:
            await trio.Path(target).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"could not delete {target}: {exc.strerror or exc}") from exc

    async def check(self) -> Checked:
        """The bucket's directory can be created and written."""
        where = self.root / self.bucket
        try:
            await trio.to_thread.run_sync(_probe_writable, where)
        except OSError as exc:
            return Checked.misconfigured(
                f"cannot write to {where}: {exc.strerror or exc}; fix its permissions or set "
                "storage.directory to a writable one"
            )
        return Checked(True, "ok")

    async def aclose(self) -> None:
        return None
