"""A fake Supabase Storage (gateway + storage server) on a real loopback socket.

HTTP/1.1 via h11 over ``trio.serve_tcp``. Routes, headers and JSON bodies follow the captures of
the real storage-api server in /work/shared/fixtures/supabase-storage (upload_ok, upload_upsert,
upload_duplicate, upload_anon_denied, upload_bad_jwt_signature, upload_expired_jwt,
upload_malformed_jwt, upload_no_auth, upload_missing_bucket, upload_too_large_bucket_limit,
upload_mime_not_allowed, upload_path_*, object_head_*, object_info_*, bucket_get_*, delete_ok,
delete_missing, delete_anon_denied, gateway_prefix_on_raw_server). Like the real thing, storage
errors are HTTP 400 with the real status as a *string* ``statusCode`` in the body; HEAD
failures have an empty body.

Not captured, so assumed: the 500 body shape (``InternalError``), a gateway 503 with a text
body, and the hosted gateway's 401 when ``apikey`` is missing.

Besides answering, the fake records what a correct client must send and lists every lapse in
``violations``: the ``/storage/v1`` prefix, ``apikey`` equal to the Bearer token,
``Content-Length`` on uploads (never chunked) and ``x-upsert`` exactly ``true``.

Fault injection for the chaos tests: with ``faults = Faults(rate, random.Random(seed))`` each
request draws from that seeded RNG whether to fail and how: ``"500"`` (the assumed
``InternalError`` body), ``"hang"`` (stall ``hang_s`` before doing anything, longer than the
client's timeout) or ``"lost"`` (store the object, then stall: the reply is lost, the object is
there). ``reply_delay_s`` holds every upload's reply after the object is stored, so
a client killed meanwhile leaves an object it never heard about.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any
from urllib.parse import unquote

import attrs
import h11
import trio

from tests.fakes.http11 import read_request, send

SERVICE_KEY = "test-service-role-key"
ANON_KEY = "test-anon-key"
EXPIRED_KEY = "test-service-role-key-expired"
OTHER_SECRET_KEY = "test-service-role-key-other-secret"
PREFIX = "/storage/v1"
ALLOWED_KEY_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_/!.*'() &$=@;:+,?-"
)

Reply = tuple[int, list[tuple[str, str]], bytes]


def storage_error(status: str, error: str, message: str, code: str) -> dict[str, str]:
    return {"statusCode": status, "error": error, "message": message, "code": code}


DUPLICATE = storage_error("409", "Duplicate", "The resource already exists", "KeyAlreadyExists")
RLS_DENIED = storage_error(
    "403", "Unauthorized", "new row violates row-level security policy", "AccessDenied"
)
NO_AUTH = storage_error(
    "400", "Error", "headers must have required property 'authorization'", "InvalidRequest"
)
NO_BUCKET = storage_error("404", "Bucket not found", "Bucket not found", "NoSuchBucket")
NO_KEY = storage_error("404", "not_found", "Object not found", "NoSuchKey")
TOO_LARGE = storage_error(
    "413", "Payload too large", "The object exceeded the maximum allowed size", "EntityTooLarge"
)
INTERNAL = storage_error("500", "internal", "Internal Server Error", "InternalError")
SLOW_DOWN = storage_error("429", "too_many_connections", "Too many connections", "SlowDown")
BAD_TOKENS = {
    EXPIRED_KEY: '"exp" claim timestamp check failed',
    OTHER_SECRET_KEY: "signature verification failed",
}


@attrs.define
class Bucket:
    name: str
    file_size_limit: int | None = None
    allowed_mime_types: list[str] | None = None


@attrs.define
class Blob:
    id: str
    data: bytes
    content_type: str
    cache_control: str


FAULT_KINDS = ("500", "hang", "lost")


@attrs.define
class Faults:
    """Seeded random faults: each request (of ``methods``) fails with probability ``rate``,
    its kind drawn evenly from ``kinds``."""

    rate: float
    rng: random.Random
    kinds: tuple[str, ...] = FAULT_KINDS
    methods: frozenset[str] = frozenset({"POST", "DELETE", "GET", "HEAD"})
    injected: Counter[str] = attrs.field(factory=Counter)

    def draw(self, method: str) -> str | None:
        if method not in self.methods or self.rng.random() >= self.rate:
            return None
        kind = self.rng.choice(self.kinds)
        self.injected[kind] += 1
        return kind


@attrs.define
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@attrs.define
class FakeSupabaseStorage:
    """Configure before or during a test; read ``requests``, ``objects``, ``violations``."""

    buckets: dict[str, Bucket] = attrs.field(
        factory=lambda: {"imagen-generated": Bucket("imagen-generated")}
    )
    objects: dict[tuple[str, str], Blob] = attrs.field(factory=dict)
    requests: list[Request] = attrs.field(factory=list)
    violations: list[str] = attrs.field(factory=list)
    # Forced replies for the next requests, in order: an HTTP status, or "hang".
    script: deque[int | str] = attrs.field(factory=deque)
    ignore_upsert: bool = False  # act like a proxy that strips x-upsert
    hang_s: float = 30.0
    faults: Faults | None = None
    reply_delay_s: float = 0.0
    url: str = ""

    def fail_next(self, n: int, status: int = 500) -> None:
        self.script.extend([status] * n)

    def hang_next(self, n: int) -> None:
        self.script.extend(["hang"] * n)

    def add_bucket(self, name: str, **rules: Any) -> None:
        self.buckets[name] = Bucket(name, **rules)

    # -- HTTP ----------------------------------------------------------------------------

    async def serve_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            try:
                while True:
                    got = await read_request(conn, stream)
                    if got is None:
                        return
                    event, body = got
                    status, headers, payload = await self.answer(event, body)
                    parts: list[Any] = [h11.Response(status_code=status, headers=headers)]
                    if payload and event.method != b"HEAD":
                        parts.append(h11.Data(data=payload))
                    await send(conn, stream, *parts, h11.EndOfMessage())
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
                return

    async def answer(self, event: h11.Request, body: bytes) -> Reply:
        headers = {k.decode().lower(): v.decode() for k, v in event.headers}
        request = Request(event.method.decode(), event.target.decode(), headers, body)
        self.requests.append(request)
        if self.script:
            forced = self.script.popleft()
            if forced == "hang":
                await trio.sleep(self.hang_s)
                return _json(504, {"message": "gateway timeout"})
            if forced == 503:
                return 503, [("content-type", "text/plain")], b"upstream unavailable"
            if forced == 429:
                return _json(429, SLOW_DOWN)
            return _json(int(forced), INTERNAL)
        fault = self.faults.draw(request.method) if self.faults is not None else None
        if fault == "500":
            return _json(500, INTERNAL)
        if fault == "hang":
            await trio.sleep(self.hang_s)
            return _json(504, {"message": "gateway timeout"})
        reply = self.route(request)
        if fault == "lost":
            await trio.sleep(self.hang_s)
        elif self.reply_delay_s and request.method == "POST":
            await trio.sleep(self.reply_delay_s)
        return reply

    # -- the gateway, then the storage server --------------------------------------------

    def route(self, req: Request) -> Reply:
        path = req.target.split("?", 1)[0]
        if not path.startswith(PREFIX + "/"):
            self.violations.append(f"{req.method} {path}: missing the {PREFIX} prefix")
            return _json(404, _route_not_found(req.method, path))
        path = path[len(PREFIX) :]
        token = _bearer(req.headers.get("authorization", ""))
        if req.headers.get("apikey") is None:
            self.violations.append(f"{req.method} {path}: no apikey header")
            return _json(401, {"message": "No API key found in request"})
        if token is not None and req.headers["apikey"] != token:
            self.violations.append(f"{req.method} {path}: apikey differs from the Bearer token")
        if token is None:
            return _json(400, NO_AUTH)
        if token in BAD_TOKENS:
            return _json(
                400, storage_error("403", "Unauthorized", BAD_TOKENS[token], "AccessDenied")
            )
        if token not in (SERVICE_KEY, ANON_KEY):
            return _json(
                400, storage_error("403", "Unauthorized", "Invalid Compact JWS", "AccessDenied")
            )
        service = token == SERVICE_KEY
        segments = path.lstrip("/").split("/")
        if req.method == "POST" and segments[0] == "object" and len(segments) >= 3:
            return self.upload(req, segments[1], unquote("/".join(segments[2:])), service)
        if req.method == "DELETE" and segments[0] == "object" and len(segments) >= 3:
            return self.delete(segments[1], unquote("/".join(segments[2:])), service)
        if req.method in ("HEAD", "GET") and segments[:2] == ["object", "authenticated"]:
            return self.head(segments[2], unquote("/".join(segments[3:])), service)
        if req.method == "GET" and segments[:3] == ["object", "info", "authenticated"]:
            return self.info(segments[3], unquote("/".join(segments[4:])), service)
        if req.method == "GET" and segments[0] == "bucket" and len(segments) == 2:
            bucket = self.buckets.get(segments[1])
            if bucket is None or not service:
                return _json(400, NO_BUCKET)
            return _json(200, {"id": bucket.name, "name": bucket.name, "public": False})
        return _json(404, _route_not_found(req.method, PREFIX + path))

    def upload(self, req: Request, bucket_name: str, key: str, service: bool) -> Reply:
        upsert_header = req.headers.get("x-upsert")
        if upsert_header != "true":
            self.violations.append(f"upload {key!r}: x-upsert is {upsert_header!r}, not 'true'")
        length = req.headers.get("content-length")
        if length is None or "transfer-encoding" in req.headers:
            self.violations.append(f"upload {key!r}: no Content-Length (chunked body)")
        content_type = req.headers.get("content-type", "application/octet-stream")
        if (bad := _key_problem(key)) is not None:
            return _json(
                400, storage_error("400", "InvalidKey", f"Invalid key: {key}{bad}", "InvalidKey")
            )
        bucket = self.buckets.get(bucket_name)
        if bucket is None:
            return _json(400, NO_BUCKET)
        if not service:
            return _json(400, RLS_DENIED)  # no policies: anon can do nothing
        if bucket.file_size_limit is not None and int(length or 0) > bucket.file_size_limit:
            return _json(400, TOO_LARGE)
        if bucket.allowed_mime_types is not None and content_type not in bucket.allowed_mime_types:
            message = f"mime type {content_type} is not supported"
            return _json(400, storage_error("415", "invalid_mime_type", message, "InvalidMimeType"))
        upsert = upsert_header == "true" and not self.ignore_upsert
        old = self.objects.get((bucket_name, key))
        if old is not None and not upsert:
            return _json(400, DUPLICATE)
        blob_id = old.id if old is not None else str(uuid.uuid4())
        cache = req.headers.get("cache-control", "no-cache")
        self.objects[(bucket_name, key)] = Blob(blob_id, req.body, content_type, cache)
        return _json(200, {"Key": f"{bucket_name}/{key}", "Id": blob_id})

    def delete(self, bucket_name: str, key: str, service: bool) -> Reply:
        # delete_ok / delete_missing / delete_anon_denied captures.
        if not service:
            return _json(400, storage_error("403", "Unauthorized", "Access denied", "AccessDenied"))
        if self.objects.pop((bucket_name, key), None) is None:
            return _json(400, NO_KEY)
        return _json(200, {"message": "Successfully deleted"})

    def head(self, bucket_name: str, key: str, service: bool) -> Reply:
        blob = self.objects.get((bucket_name, key)) if service else None
        if blob is None:
            # Real HEAD failures: 400, JSON headers, empty body.
            size = len(json.dumps(NO_KEY, separators=(",", ":")))
            return (
                400,
                [
                    ("content-type", "application/json; charset=utf-8"),
                    ("content-length", str(size)),
                ],
                b"",
            )
        return (
            200,
            [
                ("content-type", blob.content_type),
                ("content-length", str(len(blob.data))),
                ("etag", f'"{hashlib.md5(blob.data, usedforsecurity=False).hexdigest()}"'),
                ("cache-control", blob.cache_control),
            ],
            blob.data,
        )

    def info(self, bucket_name: str, key: str, service: bool) -> Reply:
        blob = self.objects.get((bucket_name, key)) if service else None
        if blob is None:
            return _json(400, NO_KEY)
        return _json(
            200,
            {
                "id": blob.id,
                "name": key,
                "bucket_id": bucket_name,
                "size": len(blob.data),
                "content_type": blob.content_type,
                "cache_control": blob.cache_control,
                "metadata": {},
            },
        )


@asynccontextmanager
async def serve_fake_storage(
    fake: FakeSupabaseStorage | None = None,
) -> AsyncIterator[FakeSupabaseStorage]:
    """Serve ``fake`` on 127.0.0.1:<free port>; ``fake.url`` is the SUPABASE_URL to use."""
    fake = fake if fake is not None else FakeSupabaseStorage()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, fake.serve_connection, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        fake.url = f"http://127.0.0.1:{port}"
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()


def _json(status: int, body: dict[str, Any]) -> Reply:
    payload = json.dumps(body, separators=(",", ":")).encode()
    return (
        status,
        [
            ("content-type", "application/json; charset=utf-8"),
            ("content-length", str(len(payload))),
        ],
        payload,
    )


def _route_not_found(method: str, path: str) -> dict[str, Any]:
    # Fastify's own 404: numeric statusCode, no code (gateway_prefix_on_raw_server.json).
    return {"message": f"Route {method}:{path} not found", "error": "Not Found", "statusCode": 404}


def _bearer(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def _key_problem(key: str) -> str | None:
    """The suffix of the server's "Invalid key: <key>" message, or None when valid."""
    if not key or any(c not in ALLOWED_KEY_CHARS for c in key):
        return ""
    if ".." in key.split("/"):
        return " contains dot path segment"
    return None
