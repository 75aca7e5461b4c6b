"""Supabase Storage over its REST API (httpx under trio via anyio).

Upload is ``POST {SUPABASE_URL}/storage/v1/object/{bucket}/{key}`` with the raw bytes (so
``Content-Length`` is always sent: a chunked body slips past a bucket's size limit) and
``x-upsert: true`` (exactly; a re-run after a crash overwrites its own earlier attempt).

The server's quirk: object routes answer almost every failure with HTTP 400 and put the real
status in the JSON body as a *string* (``{"statusCode": "403", "code": "AccessDenied", ...}``),
so failures are classified from the body, falling back to the HTTP status. Bad or expired
keys come back as ``"403"``/``AccessDenied``, never 401.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Self
from urllib.parse import quote, urlsplit

import attrs
import httpx
import trio

from imagen_actors.config.settings import SupabaseStorageConfig, secret_from_env
from imagen_actors.core.backoff import Backoff
from imagen_actors.core.errors import ConfigError, StorageError
from imagen_actors.storage.base import StoredObject

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
STORAGE_PREFIX = "/storage/v1"
# The server's own allowed key characters (anything else is "InvalidKey").
KEY_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_/!.*'() &$=@;:+,?-"
)
MAX_KEY_BYTES = 1024
_RETRY_STATUSES = frozenset({408, 429})


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


def storage_root(url: str, *, url_env: str) -> str:
    """``{SUPABASE_URL}/storage/v1``; a URL that already ends in /storage/v1 is kept."""
    root = url.strip().rstrip("/")
    parts = urlsplit(root)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"${url_env} is {url!r}, not an http(s) URL; "
            f"export {url_env}=https://<project-ref>.supabase.co"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"${url_env} must be a plain project URL without '?' or '#'")
    return root if root.endswith(STORAGE_PREFIX) else root + STORAGE_PREFIX


@attrs.frozen
class Failure:
    """One refused exchange: ``status`` is the body's statusCode when it has one."""

    http_status: int
    status: int
    code: str
    message: str

    @property
    def transient(self) -> bool:
        return (
            self.http_status >= 500
            or self.status >= 500
            or self.http_status in _RETRY_STATUSES
            or self.status in _RETRY_STATUSES
        )

    def __str__(self) -> str:
        label = self.code or f"HTTP {self.http_status}"
        return f"{label} ({self.status}): {self.message}"


def parse_failure(response: httpx.Response) -> Failure:
    status, code, message = response.status_code, "", ""
    body: Any = None
    if response.content:
        try:
            body = response.json()
        except ValueError:
            message = response.text.strip()[:200]
    if isinstance(body, dict):
        with contextlib.suppress(TypeError, ValueError):
            status = int(body.get("statusCode", status))
        code = str(body.get("code") or body.get("error") or "")
        message = str(body.get("message") or body.get("error") or "")
    return Failure(response.status_code, status, code, message or response.reason_phrase)


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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(f"storage.bucket {bucket!r} must be a non-empty name without '/'")
        self.bucket = bucket
        self.root = storage_root(url, url_env=url_env)
        self.url_env = url_env
        self.key_env = key_env
        self.cache_control_s = cache_control_s
        self.timeout_s = timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff = Backoff(base_s=backoff_base_s, cap_s=max(backoff_base_s, backoff_cap_s))
        # The hosted gateway wants ``apikey``; the storage server reads the Bearer JWT.
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

    async def check(self) -> str:
        url = f"{self.root}/bucket/{quote(self.bucket, safe='')}"
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            return f"cannot reach {self.root} (${self.url_env}): {type(exc).__name__}: {exc}"
        if response.status_code == 200:
            return "ok"
        failure = parse_failure(response)
        return f"bucket {self.bucket}: {failure}; {self._fix(failure, None)}"

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
        last_exc: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            delay = self.backoff.delay_s(attempt)
            try:
                response = await self._client.request(method, url, headers=headers, content=content)
            except httpx.UnsupportedProtocol as exc:
                raise StorageError(
                    f"{op} of {self.bucket}/{key}: {exc}; check ${self.url_env}",
                    error_class="permanent",
                ) from exc
            except httpx.TimeoutException as exc:
                last, last_exc = f"timed out after {self.timeout_s:g}s ({type(exc).__name__})", exc
            except httpx.TransportError as exc:
                last, last_exc = f"connection failed: {type(exc).__name__}: {exc}", exc
            else:
                failure = None if response.status_code < 400 else parse_failure(response)
                if failure is None or not failure.transient:
                    return response
                last, last_exc = str(failure), None
                delay = max(delay, self._retry_after(response))
            if attempt < self.max_attempts:
                await trio.sleep(delay)
        error = StorageError(
            f"Supabase storage {op} of {self.bucket}/{key} failed after "
            f"{self.max_attempts} attempt(s): {last}; the server at {self.root} may be down "
            f"or overloaded (check ${self.url_env} and the project's status)",
            error_class="transient",
        )
        if last_exc is not None:
            raise error from last_exc
        raise error

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
        return StorageError(
            f"Supabase storage refused {op} of {self.bucket}/{key}: {failure}; "
            f"{self._fix(failure, content_type)}",
            error_class="permanent",
        )

    def _fix(self, failure: Failure, content_type: str | None) -> str:
        code, message = failure.code, failure.message.lower()
        key_hint = f"check ${self.key_env}"
        rls = "row-level security" in message or "access denied" in message
        if code == "AccessDenied" and rls:
            return (
                f"{key_hint}: it must be the project's service_role (secret) key, "
                "which bypasses RLS; an anon or user key is refused by the bucket's policies"
            )
        if code in ("AccessDenied", "InvalidJWT") or failure.http_status in (401, 403):
            return f"{key_hint}: it is expired, from another project, or not a valid key"
        if code == "InvalidRequest" and "authorization" in message:
            return f"{key_hint}: no Authorization header reached the server"
        if code == "NoSuchBucket":
            return (
                f"create bucket {self.bucket} (Supabase dashboard → Storage → New bucket) "
                "or set storage.bucket to an existing one"
            )
        if code == "EntityTooLarge" or failure.status == 413:
            return "raise the bucket's file size limit (or the project's global upload limit)"
        if code == "InvalidMimeType" or failure.status == 415:
            mime = content_type or "this content type"
            return f"allow {mime} in bucket {self.bucket}'s allowed MIME types"
        if code in ("KeyAlreadyExists", "ResourceAlreadyExists", "Duplicate"):
            return "the server ignored 'x-upsert: true'; check that no proxy strips that header"
        if code == "InvalidKey":
            return "use keys of ASCII letters, digits and -_./ only"
        if failure.http_status == 404 and not code:
            return (
                f"check ${self.url_env}: it should be the project URL "
                f"(https://<ref>.supabase.co); {STORAGE_PREFIX} is appended"
            )
        return "see the Storage logs in the Supabase dashboard"


def build(
    cfg: SupabaseStorageConfig,
    *,
    backoff_base_s: float = BACKOFF_BASE_S,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SupabaseStore:
    """The store named by ``storage:`` config; fails fast when an env var is unset."""
    url = secret_from_env(cfg.url_env, key_path="storage.url_env")
    api_key = secret_from_env(cfg.key_env, key_path="storage.key_env")
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
        transport=transport,
    )
