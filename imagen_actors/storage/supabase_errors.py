"""Reading Supabase Storage's failures, and saying them in one line a person can act on.

Object routes answer almost every failure with HTTP 400 and put the real status in the JSON
body as a *string* (``{"statusCode": "403", "code": "AccessDenied", ...}``), so a failure is
classified from the body, falling back to the HTTP status. Bad or expired keys come back as
``"403"``/``AccessDenied``, never 401. A proxy or gateway in front may answer with an HTML page.

What reaches a job's error is one line, bounded, with no HTML and no server file paths: the
full reply stays in :class:`StorageReply` (the StorageError's ``__cause__``) and the DEBUG log.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Final

import attrs
import httpx

from imagen_actors.core.errors import ErrorClass

MAX_MESSAGE: Final = 500
MAX_SERVER_TEXT: Final = 200
MAX_DETAIL: Final = 64 * 1024
_RETRY_STATUSES: Final = frozenset({408, 429})
_SPACE: Final = re.compile(r"\s+")
_TITLE: Final = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
# An absolute server path after a space, quote or paren: '/var/lib/storage/x', C:\srv\x,
# "at /srv/storage/dist/index.js:1:1". A route such as "POST:/object/x" follows ':' and stays.
_SERVER_PATH: Final = re.compile(r"(?:(?<=[\s'\"(])|^)(?:[A-Za-z]:\\|/)[^\s'\"()]*[/\\][^\s'\"()]*")


class StorageReply(Exception):
    """The whole reply behind a refused or failed exchange (kept as the error's cause)."""


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line, cut to ``limit`` characters (an ellipsis marks the cut)."""
    flat = _SPACE.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def compose(head: str, reason: str, tail: str, limit: int = MAX_MESSAGE) -> str:
    """``head: reason; tail`` on one line within ``limit``, cutting the reason (what the
    server said) first, so the part naming what failed and the fix survive."""
    head, reason, tail = one_line(head, limit), one_line(reason, limit), one_line(tail, limit)
    room = limit - len(head) - len(tail) - 4
    if room < 40:  # nothing sensible fits: cut the whole line instead
        return one_line(f"{head}: {reason}; {tail}", limit)
    return f"{head}: {one_line(reason, room)}; {tail}"


def _server_text(text: str, code: str) -> str:
    """What the server said, fit for a job's error: no file paths, one short line."""
    if code == "InvalidKey":
        # The file backend's InvalidKey echoes its on-disk path (stub/stub/<bucket>/<key>/<id>).
        dot = " (it contains a dot path segment)" if "dot path segment" in text else ""
        return f"Invalid key{dot}"
    return one_line(_SERVER_PATH.sub("(a server path)", text), MAX_SERVER_TEXT)


def _html_summary(response: httpx.Response) -> str:
    title = _TITLE.search(response.text)
    named = f" titled {one_line(title.group(1), 80)!r}" if title else ""
    return (
        f"an HTML page{named} ({len(response.content)} bytes) instead of storage's JSON: "
        "a proxy or gateway in front of storage answered"
    )


def _is_html(response: httpx.Response) -> bool:
    kind = response.headers.get("content-type", "").lower()
    return "html" in kind or response.content.lstrip()[:1] == b"<"


@attrs.frozen
class Failure:
    """One refused exchange: ``status`` is the body's statusCode when it has one; ``message``
    is safe to show; ``detail`` is the whole reply, for the DEBUG log and the cause."""

    http_status: int
    status: int
    code: str
    message: str
    error: str = ""
    detail: str = ""

    @property
    def transient(self) -> bool:
        return (
            self.http_status >= 500
            or self.status >= 500
            or self.http_status in _RETRY_STATUSES
            or self.status in _RETRY_STATUSES
        )

    @property
    def error_class(self) -> ErrorClass:
        """``dependency`` for a server that is down or overloaded (5xx, 544, 408, 429);
        ``configuration`` for a key, bucket or URL that is wrong (401/403, AccessDenied,
        InvalidJWT, NoSuchBucket, no such route); else ``permanent``: this object is refused
        (too large, a MIME type the bucket does not allow, a bad key)."""
        if self.transient:
            return "dependency"
        if (
            self.code in ("AccessDenied", "InvalidJWT", "NoSuchBucket", "Unauthorized")
            or self.http_status in (401, 403)
            or self.status in (401, 403)
            or self.route_not_found
        ):
            return "configuration"
        return "permanent"

    @property
    def route_not_found(self) -> bool:
        """The storage server (Fastify) has no such route: the URL is wrong."""
        return self.http_status == 404 and (self.error == "Not Found" or not self.code)

    def __str__(self) -> str:
        label = self.code or f"HTTP {self.http_status}"
        return f"{label} ({self.status}): {self.message}"


def parse_failure(response: httpx.Response) -> Failure:
    status, code, error, message = response.status_code, "", "", ""
    body: Any = None
    request = response.request
    detail = (
        f"HTTP {response.status_code} {response.reason_phrase} from {request.method} "
        f"{request.url}: {response.text[:MAX_DETAIL]}"
    )
    if _is_html(response):
        message = _html_summary(response)
    elif response.content:
        try:
            body = response.json()
        except ValueError:
            message = _server_text(response.text, "")
    if isinstance(body, dict):
        with contextlib.suppress(TypeError, ValueError):
            status = int(body.get("statusCode", status))
        error = str(body.get("error") or "")
        code = str(body.get("code") or error)
        message = _server_text(str(body.get("message") or error), code)
    return Failure(
        response.status_code,
        status,
        code,
        message or response.reason_phrase,
        error=error,
        detail=detail,
    )


def fix(
    failure: Failure,
    *,
    bucket: str,
    content_type: str | None,
    url_env: str,
    key_env: str,
    root: str,
    prefix: str,
) -> str:
    """What to do about ``failure``, naming the setting or variable to change."""
    code, message = failure.code, failure.message.lower()
    key_hint = f"check ${key_env}"
    rls = "row-level security" in message or "access denied" in message
    if code == "AccessDenied" and rls:
        return (
            f"{key_hint}: it must be the project's service_role or secret (sb_secret_...) key, "
            "which bypasses RLS; an anon, publishable or user key is refused by the policies"
        )
    if code in ("AccessDenied", "InvalidJWT") or failure.http_status in (401, 403):
        return f"{key_hint}: it is expired, from another project, or not a valid key"
    if code == "InvalidRequest" and "authorization" in message:
        return f"{key_hint}: no Authorization header reached the server"
    if code == "NoSuchBucket":
        return (
            f"create bucket {bucket} (Supabase dashboard → Storage → New bucket) "
            "or set storage.bucket to an existing one"
        )
    if code == "EntityTooLarge" or failure.status == 413:
        return "raise the bucket's file size limit (or the project's global upload limit)"
    if code == "InvalidMimeType" or failure.status == 415:
        mime = content_type or "this content type"
        return f"allow {mime} in bucket {bucket}'s allowed MIME types"
    if code in ("KeyAlreadyExists", "ResourceAlreadyExists", "Duplicate"):
        return "the server ignored 'x-upsert: true'; check that no proxy strips that header"
    if code == "InvalidKey":
        return "use keys of ASCII letters, digits and -_./ only"
    if failure.route_not_found:
        if prefix:
            return (
                f"check ${url_env}: {root} has no storage routes; for a Supabase project it is "
                f"the project URL (https://<ref>.supabase.co, {prefix} is appended); for a "
                'storage server reached directly, without the gateway, set storage.path_prefix: ""'
            )
        return (
            f"check ${url_env}: {root} has no storage routes; behind Supabase's gateway set "
            "storage.path_prefix: /storage/v1 (the default)"
        )
    return "see the Storage logs in the Supabase dashboard"
