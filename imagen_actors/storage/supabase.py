"""Supabase Storage over its REST API (httpx under trio via anyio).

Upload is ``POST {SUPABASE_URL}/storage/v1/object/{bucket}/{key}`` with the raw bytes (so
``Content-Length`` is always sent: a chunked body slips past a bucket's size limit) and
``x-upsert: true`` (exactly; a re-run after a crash overwrites its own earlier attempt).
``/storage/v1`` is Supabase's gateway prefix (``storage.path_prefix``; "" for a storage server
reached directly). The key, a JWT or a new-style ``sb_secret_...`` key, is never decoded: it
goes as it is as ``apikey`` and ``Authorization: Bearer``, as the hosted gateway expects.
Failures are read and worded by :mod:`imagen_actors.storage.supabase_errors`.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Self
from urllib.parse import quote, urlsplit

import httpx
import trio

from imagen_actors.config.settings import SupabaseStorageConfig, secret_from_env
from imagen_actors.core.backoff import Backoff
from imagen_actors.core.errors import ConfigError, StorageError
from imagen_actors.core.records import Checked
from imagen_actors.storage.base import StoredObject
from imagen_actors.storage.supabase_errors import (
    Failure,
    StorageReply,
    compose,
    fix,
    one_line,
    parse_failure,
)

log = logging.getLogger(__name__)
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
STORAGE_PREFIX = "/storage/v1"
# The server's own allowed key characters (anything else is "InvalidKey").
KEY_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_/!.*'() &$=@;:+,?-"
)
MAX_KEY_BYTES = 1024


def key_problem(key: str) -> str | None:
    """Why the server would refuse (or misfile) ``key``, or None when it is fine."""
    if not key:
        return "it is empty"
    if not key.isascii():
        return "it is not plain ASCII"
    bad = sorted({c for c in key if c not in KEY_CHARS})
    if bad:
        return f"it contains {''.join(bad)!r} (allowed: letters, digits and _/!.*'() &$=@;:+,?-)"
    if key.endswith("/"):
        return "it ends with '/' (that names a folder, not an object)"
    if key.startswith("/"):
        return "it starts with '/'"
    segments = key.split("/")
    if ".." in segments or "." in segments:
        return "it has a '.' or '..' path segment"
    if "" in segments:
        return "it has an empty path segment ('//')"
    if len(key.encode()) > MAX_KEY_BYTES:
        return f"it is longer than {MAX_KEY_BYTES} bytes"
    return None


def storage_root(url: str, *, url_env: str, prefix: str = STORAGE_PREFIX) -> str:
    """``{SUPABASE_URL}{prefix}``; a URL that already ends in ``prefix`` is kept."""
    root = url.strip().rstrip("/")
    parts = urlsplit(root)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"${url_env} is {url!r}, not an http(s) URL; "
            f"export {url_env}=https://<project-ref>.supabase.co"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"${url_env} must be a plain project URL without '?' or '#'")
    return root if root.endswith(prefix) else root + prefix


class SupabaseStore:
    """An ObjectStore writing to one Supabase Storage bucket."""

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        bucket: str,
        cache_control_s: int = 3600,
        timeout_s: float = 60.0,
        max_attempts: int = 4,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
        url_env: str = "SUPABASE_URL",
        key_env: str = "SUPABASE_SERVICE_KEY",
        path_prefix: str = STORAGE_PREFIX,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(f"storage.bucket {bucket!r} must be a non-empty name without '/'")
        self.bucket = bucket
        self.prefix = path_prefix
        self.root = storage_root(url, url_env=url_env, prefix=path_prefix)
        self.url_env = url_env
        self.key_env = key_env
        self.cache_control_s = cache_control_s
        self.timeout_s = timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff = Backoff(base_s=backoff_base_s, cap_s=max(backoff_base_s, backoff_cap_s))
        # The hosted gateway wants ``apikey`` (and swaps an sb_secret_ key sent as both for a
        # JWT); the storage server reads the Bearer JWT. Neither is decoded here.
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}", "apikey": api_key},
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            transport=transport,
        )

    def __repr__(self) -> str:  # never show the key
        return f"SupabaseStore(root={self.root!r}, bucket={self.bucket!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def object_url(self, key: str, *, route: str = "object") -> str:
        return f"{self.root}/{route}/{quote(self.bucket, safe='')}/{quote(key, safe='/')}"

    # -- ObjectStore ---------------------------------------------------------------------

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        self._check_key(key)
        if not data:
            raise StorageError(
                f"refusing to upload an empty body to {self.bucket}/{key}: "
                "the image bytes are missing",
                error_class="permanent",
            )
        url = self.object_url(key)
        headers = {
            "Content-Type": content_type,
            "x-upsert": "true",
            "cache-control": f"max-age={self.cache_control_s}",
        }
        # bytes, never an iterator: httpx then sends Content-Length, not chunked.
        response = await self._exchange(
            "POST", url, key=key, op="upload", headers=headers, content=bytes(data)
        )
        if not response.is_success:
            raise self._refused("upload", key, parse_failure(response), content_type)
        return StoredObject(self.bucket, key, url)

    async def exists(self, key: str) -> bool:
        self._check_key(key)
        head = await self._exchange(
            "HEAD", self.object_url(key, route="object/authenticated"), key=key, op="lookup"
        )
        if head.status_code == 200:
            return True
        # HEAD failures have an empty body; the info route says why in JSON.
        info = await self._exchange(
            "GET", self.object_url(key, route="object/info/authenticated"), key=key, op="lookup"
        )
        if info.status_code == 200:
            return True
        failure = parse_failure(info)
        if failure.code == "NoSuchKey":
            return False
        raise self._refused("lookup", key, failure, None)

    async def get(self, key: str) -> bytes | None:
        """``GET /object/authenticated/{bucket}/{key}``; None when the object is missing (the
        lookup routes say so: a failed download's body differs between server versions)."""
        self._check_key(key)
        response = await self._exchange(
            "GET", self.object_url(key, route="object/authenticated"), key=key, op="download"
        )
        if response.status_code == 200:
            return response.content
        if not await self.exists(key):
            return None
        raise self._refused("download", key, parse_failure(response), None)

    async def delete(self, key: str) -> None:
        """``DELETE /object/{bucket}/{key}``; a missing object is fine (``NoSuchKey``, or the
        bare ``"error": "not_found"`` body older storage-api versions send)."""
        self._check_key(key)
        response = await self._exchange("DELETE", self.object_url(key), key=key, op="delete")
        if response.is_success:
            return
        failure = parse_failure(response)
        if failure.code not in ("NoSuchKey", "not_found"):
            raise self._refused("delete", key, failure, None)

    async def check(self) -> Checked:
        """``GET /bucket/{id}`` with the service key: the bucket exists and the key is
        accepted (a key that may not write gets 403/400 AccessDenied here too)."""
        url = f"{self.root}/bucket/{quote(self.bucket, safe='')}"
        try:
            response = await self._client.get(url)
        except httpx.UnsupportedProtocol as exc:
            return Checked.misconfigured(one_line(f"{self.root}: {exc}; check ${self.url_env}"))
        except httpx.HTTPError as exc:
            return Checked.down(
                one_line(f"cannot reach {self.root} (${self.url_env}): {type(exc).__name__}: {exc}")
            )
        if response.status_code == 200:
            return Checked(True, "ok")
        failure = parse_failure(response)
        log.debug("storage check of bucket %s: %s", self.bucket, failure.detail)
        detail = compose(f"bucket {self.bucket}", str(failure), self._fix(failure, None))
        if failure.error_class == "dependency":
            return Checked.down(detail)
        return Checked.misconfigured(detail)

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- internals -----------------------------------------------------------------------

    def _check_key(self, key: str) -> None:
        problem = key_problem(key)
        if problem is not None:
            raise StorageError(
                f"invalid object key {key!r} for bucket {self.bucket}: {problem}",
                error_class="permanent",
            )

    async def _exchange(
        self,
        method: str,
        url: str,
        *,
        key: str,
        op: str,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send, retrying transient failures; return the first non-transient response."""
        last = ""
        last_exc: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            delay = self.backoff.delay_s(attempt)
            try:
                response = await self._client.request(method, url, headers=headers, content=content)
            except httpx.UnsupportedProtocol as exc:
                raise StorageError(
                    one_line(f"{op} of {self.bucket}/{key}: {exc}; check ${self.url_env}"),
                    error_class="configuration",
                ) from exc
            except httpx.TimeoutException as exc:
                last, last_exc = f"timed out after {self.timeout_s:g}s ({type(exc).__name__})", exc
            except httpx.TransportError as exc:
                last, last_exc = f"connection failed: {type(exc).__name__}: {exc}", exc
            else:
                failure = None if response.status_code < 400 else parse_failure(response)
                if failure is None or not failure.transient:
                    return response
                log.debug("storage %s of %s/%s, attempt %d: %s",
                          op, self.bucket, key, attempt, failure.detail)  # fmt: skip
                last, last_exc = str(failure), StorageReply(failure.detail)
                delay = max(delay, self._retry_after(response))
            if attempt < self.max_attempts:
                await trio.sleep(delay)
        raise StorageError(
            compose(
                f"Supabase storage {op} of {self.bucket}/{key} failed after "
                f"{self.max_attempts} attempt(s)",
                last,
                f"the server at {self.root} may be down or overloaded "
                f"(check ${self.url_env} and the project's status)",
            ),
            error_class="dependency",
        ) from last_exc

    def _retry_after(self, response: httpx.Response) -> float:
        raw = response.headers.get("retry-after", "")
        try:
            value = float(raw)
        except ValueError:
            return 0.0
        return min(self.backoff.cap_s, value) if math.isfinite(value) and value > 0 else 0.0

    def _refused(
        self, op: str, key: str, failure: Failure, content_type: str | None
    ) -> StorageError:
        """A refusal (a job or configuration fault, ``Failure.error_class``): one bounded line;
        the whole reply is its cause and DEBUG log."""
        log.debug("storage %s of %s/%s refused: %s", op, self.bucket, key, failure.detail)
        error = StorageError(
            compose(
                f"Supabase storage refused {op} of {self.bucket}/{key}",
                str(failure),
                self._fix(failure, content_type),
            ),
            error_class=failure.error_class,
        )
        error.__cause__ = StorageReply(failure.detail)
        return error

    def _fix(self, failure: Failure, content_type: str | None) -> str:
        return fix(
            failure,
            bucket=self.bucket,
            content_type=content_type,
            url_env=self.url_env,
            key_env=self.key_env,
            root=self.root,
            prefix=self.prefix,
        )


def build(
    cfg: SupabaseStorageConfig,
    *,
    backoff_base_s: float = BACKOFF_BASE_S,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SupabaseStore:
    """The store named by ``storage:`` config; fails fast when an env var is unset or empty."""
    url = _from_env(cfg.url_env, key_path="storage.url_env", what="https://<ref>.supabase.co")
    api_key = _from_env(
        cfg.key_env, key_path="storage.key_env", what="<the project's service_role or secret key>"
    )
    return SupabaseStore(
        url=url,
        api_key=api_key,
        bucket=cfg.bucket,
        cache_control_s=cfg.cache_control_s,
        timeout_s=cfg.timeout_s,
        max_attempts=cfg.max_attempts,
        backoff_base_s=backoff_base_s,
        url_env=cfg.url_env,
        key_env=cfg.key_env,
        path_prefix=cfg.path_prefix,
        transport=transport,
    )


def _from_env(var: str, *, key_path: str, what: str) -> str:
    """``$var`` stripped; set-but-empty is its own error (an unset one is secret_from_env's)."""
    raw = os.environ.get(var)
    if raw is not None and not raw.strip():
        raise ConfigError(
            f"{var} is set but empty; export {var}={what} ({key_path} names it)", key=key_path
        )
    return secret_from_env(var, key_path=key_path).strip()
