"""A fake Supabase Storage (gateway + storage server) on a real loopback socket.

HTTP/1.1 via h11 over ``trio.serve_tcp``. Routes, headers and JSON bodies follow the captures of
the real storage-api server in /work/shared/fixtures/supabase-storage, and
tests/integration/test_storage_captures.py replays them through this fake so it cannot drift.
Like the real thing: storage errors are HTTP 400 with the real status as a *string*
``statusCode`` in the body; HEAD failures have an empty body; keys are HS256 JWTs checked
against the captures' secret (signature, ``exp``, then the ``role`` claim); a missing object
is NoSuchKey whoever asks (RLS hides rows, it does not refuse them); an upload checks the
bucket, then its size and type limits, then RLS (an anon oversize upload gets 413).

``gateway=True`` (default) puts Supabase's API gateway in front: routes live under
``/storage/v1``, ``apikey`` is required, and a new-style secret key (``sb_secret_...``, in
``secret_keys``) sent as ``apikey`` (and as the Bearer token, or without one) is swapped for a
service_role JWT, as the hosted gateway does. ``gateway=False`` is the bare storage server
(routes at the root; ``/storage/v1/...`` is Fastify's 404, gateway_prefix_on_raw_server.json).
Not captured, so assumed: the gateway's 401 bodies.

Outages (``fake.outage``), each answering every request until set back to None:
``"502-html"`` a gateway's HTML 502 page, ``"544"`` the server's DatabaseTimeout after its
database stalls (after ``db_stall_s``; the real one waits ~30 s), ``"500-internal"`` its
``"error":"Internal"`` 500 with the database down.

Besides answering, the fake records what a correct client must send and lists every lapse in
``violations``: the ``/storage/v1`` prefix, ``apikey`` equal to the Bearer token,
``Content-Length`` on uploads (never chunked) and ``x-upsert`` exactly ``true``.

Fault injection for the chaos tests: with ``faults = Faults(rate, random.Random(seed))`` each
request draws from that seeded RNG whether to fail and how: ``"500"`` (the Internal body),
``"hang"`` (stall ``hang_s`` before doing anything, longer than the client's timeout) or
``"lost"`` (store the object, then stall: the reply is lost, the object is there).
``reply_delay_s`` holds every upload's reply after the object is stored, so a client killed
meanwhile leaves an object it never heard about.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Literal
from urllib.parse import unquote

import attrs
import h11
import trio

from tests.fakes.http11 import read_request, send
from tests.fakes.supabase_replies import (
    BAD_GATEWAY_HTML,
    DATABASE_TIMEOUT,
    DELETE_DENIED,
    DUPLICATE,
    INTERNAL,
    NO_AUTH,
    NO_BUCKET,
    NO_KEY,
    OTHER_SECRET,
    RLS_DENIED,
    SLOW_DOWN,
    TOO_LARGE,
    Blob,
    Bucket,
    Faults,
    Reply,
    Request,
    html_reply,
    http_date,
    iso_ms,
    json_reply,
    make_jwt,
    route_not_found,
    storage_error,
    verify_jwt,
)

_CLAIMS = {"iss": "supabase-local", "iat": 1763850000, "exp": 1924992000}
# The captures' tokens (README "Tokens used"), byte for byte.
SERVICE_KEY = make_jwt({"role": "service_role", **_CLAIMS})
ANON_KEY = make_jwt({"role": "anon", **_CLAIMS})
EXPIRED_KEY = make_jwt({"role": "service_role", "iss": "supabase-local", "iat": 1600000000,
                        "exp": 1600003600})  # fmt: skip
OTHER_SECRET_KEY = make_jwt({"role": "service_role", **_CLAIMS}, OTHER_SECRET)
SECRET_KEY = "sb_secret_fake0123456789abcdefghijklmnop"  # a new-style (non-JWT) secret key
PREFIX = "/storage/v1"
GLOBAL_LIMIT = 5 * 1024 * 1024  # the captures' UPLOAD_FILE_SIZE_LIMIT
ALLOWED_KEY_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_/!.*'() &$=@;:+,?-"
)
Outage = Literal["502-html", "544", "500-internal"]


@attrs.define
class FakeSupabaseStorage:
    """Configure before or during a test; read ``requests``, ``objects``, ``violations``."""

    buckets: dict[str, Bucket] = attrs.field(
        factory=lambda: {"imagen-generated": Bucket("imagen-generated")}
    )
    objects: dict[tuple[str, str], Blob] = attrs.field(factory=dict)
    requests: list[Request] = attrs.field(factory=list)
    violations: list[str] = attrs.field(factory=list)
    gateway: bool = True
    secret_keys: frozenset[str] = frozenset({SECRET_KEY})
    outage: Outage | None = None
    db_stall_s: float = 0.0
    # Forced replies for the next requests, in order: an HTTP status, "hang", or a whole Reply.
    script: deque[int | str | Reply] = attrs.field(factory=deque)
    ignore_upsert: bool = False  # act like a proxy that strips x-upsert
    hang_s: float = 30.0
    faults: Faults | None = None
    reply_delay_s: float = 0.0
    # Awaited before an upload is stored (``(method, key)``): a test can freeze the client
    # there, or hold the write back until after something else happened.
    on_upload: Callable[[str, str], Awaitable[None]] | None = None
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
        if self.outage == "502-html":
            return html_reply(502, BAD_GATEWAY_HTML)
        if self.outage == "544":
            await trio.sleep(self.db_stall_s)
            return json_reply(544, DATABASE_TIMEOUT)
        if self.outage == "500-internal":
            return json_reply(500, INTERNAL)
        if self.script:
            forced = self.script.popleft()
            if isinstance(forced, tuple):
                return forced
            if forced == "hang":
                await trio.sleep(self.hang_s)
                return json_reply(504, {"message": "gateway timeout"})
            if forced == 503:
                return 503, [("content-type", "text/plain")], b"upstream unavailable"
            if forced == 429:
                return json_reply(429, SLOW_DOWN)
            return json_reply(int(forced), INTERNAL)
        fault = self.faults.draw(request.method) if self.faults is not None else None
        if fault == "500":
            return json_reply(500, INTERNAL)
        if fault == "hang":
            await trio.sleep(self.hang_s)
            return json_reply(504, {"message": "gateway timeout"})
        if (
            self.on_upload is not None
            and request.method in ("POST", "PUT")
            and "/object/" in (path := request.target.split("?", 1)[0])
        ):
            await self.on_upload(request.method, unquote(path.split("/object/", 1)[1]))
        reply = self.through_gateway(request) if self.gateway else self.route(request)
        if fault == "lost":
            await trio.sleep(self.hang_s)
        elif self.reply_delay_s and request.method == "POST":
            await trio.sleep(self.reply_delay_s)
        return reply

    # -- the gateway, then the storage server --------------------------------------------

    def through_gateway(self, req: Request) -> Reply:
        path = req.target.split("?", 1)[0]
        if not path.startswith(PREFIX + "/"):
            self.violations.append(f"{req.method} {path}: missing the {PREFIX} prefix")
            return json_reply(404, {"message": "no Route matched with those values"})
        apikey = req.headers.get("apikey")
        if apikey is None:
            self.violations.append(f"{req.method} {path}: no apikey header")
            return json_reply(401, {"message": "No API key found in request"})
        token = _bearer(req.headers.get("authorization", ""))
        if token is not None and apikey != token:
            self.violations.append(f"{req.method} {path}: apikey differs from the Bearer token")
        headers = dict(req.headers)
        if apikey.startswith("sb_"):
            if apikey not in self.secret_keys:
                return json_reply(401, {"message": "Invalid API key"})
            if token in (None, apikey):  # the gateway mints the upstream JWT
                headers["authorization"] = f"Bearer {SERVICE_KEY}"
        return self.route(Request(req.method, req.target[len(PREFIX) :], headers, req.body))

    def route(self, req: Request) -> Reply:
        path = req.target.split("?", 1)[0]
        seg = path.lstrip("/").split("/")
        method = req.method
        if method == "GET" and path == "/status":
            return 200, [("content-length", "0")], b""
        public = seg[0] == "object" and seg[1:2] == ["public"] and len(seg) >= 4
        if public and method in ("GET", "HEAD"):
            return self.read(seg[2], _key(seg[3:]), None, public=True)
        auth = seg[0] in ("object", "bucket") and len(seg) >= 2 and seg[1] != ""
        if not auth:
            return route_not_found(method, path)
        token = _bearer(req.headers.get("authorization", ""))
        if token is None:
            return json_reply(400, NO_AUTH)
        role, refusal = verify_jwt(token)
        if role is None:
            return json_reply(400, storage_error("403", "Unauthorized", refusal, "AccessDenied"))
        service = role == "service_role"
        if seg[0] == "bucket":
            if method == "GET" and len(seg) == 2:
                return self.bucket_info(seg[1], service)
            return route_not_found(method, path)
        if seg[1] == "info" and method == "GET" and len(seg) >= 4:
            rest = seg[3:] if seg[2] in ("authenticated", "public") else seg[2:]
            if len(rest) >= 2:
                return self.info(rest[0], _key(rest[1:]), service)
        if seg[1] == "authenticated" and method in ("GET", "HEAD") and len(seg) >= 4:
            return self.read(seg[2], _key(seg[3:]), service)
        if seg[1] in ("info", "authenticated", "public", "sign", "list", "upload"):
            return route_not_found(method, path)
        if len(seg) >= 3:
            bucket, key = seg[1], _key(seg[2:])
            if method in ("GET", "HEAD"):
                return self.read(bucket, key, service)
            if method in ("POST", "PUT"):
                return self.upload(req, bucket, key, service, update=method == "PUT")
            if method == "DELETE":
                return self.delete(bucket, key, service)
        return route_not_found(method, path)

    def upload(
        self, req: Request, bucket_name: str, key: str, service: bool, update: bool
    ) -> Reply:
        upsert_header = req.headers.get("x-upsert")
        if upsert_header != "true":
            self.violations.append(f"upload {key!r}: x-upsert is {upsert_header!r}, not 'true'")
        length = req.headers.get("content-length")
        if length is None or "transfer-encoding" in req.headers:
            self.violations.append(f"upload {key!r}: no Content-Length (chunked body)")
        content_type = req.headers.get("content-type", "application/octet-stream")
        if not key.isascii() or any(c not in ALLOWED_KEY_CHARS for c in key):
            return json_reply(400, _invalid_key(key))
        bucket = self.buckets.get(bucket_name)
        if bucket is None:
            return json_reply(400, NO_BUCKET)
        # Raw bodies are judged by their declared Content-Length (a chunked one slips past).
        size = int(length or 0)
        limit = min(GLOBAL_LIMIT, bucket.file_size_limit or GLOBAL_LIMIT)
        if size > limit:
            return json_reply(400, TOO_LARGE)
        if bucket.allowed_mime_types is not None and content_type not in bucket.allowed_mime_types:
            message = f"mime type {content_type} is not supported"
            return json_reply(
                400, storage_error("415", "invalid_mime_type", message, "InvalidMimeType")
            )
        if not service:
            return json_reply(400, RLS_DENIED)  # no policies: anon can do nothing
        version = str(uuid.uuid4())
        if ".." in key.split("/"):  # the file backend's check: its message leaks the disk path
            disk = f"stub/stub/{bucket_name}/{key}/{version}"
            return json_reply(400, _invalid_key(disk, " contains dot path segment"))
        upsert = update or (upsert_header == "true" and not self.ignore_upsert)
        old = self.objects.get((bucket_name, key))
        if old is not None and not upsert:
            return json_reply(400, DUPLICATE)
        blob_id = old.id if old is not None else str(uuid.uuid4())
        created = old.created if old is not None else time.time()
        cache = req.headers.get("cache-control", "no-cache")
        self.objects[(bucket_name, key)] = Blob(
            blob_id, req.body, content_type, cache, version=version, created=created
        )
        return json_reply(200, {"Key": f"{bucket_name}/{key}", "Id": blob_id})

    def delete(self, bucket_name: str, key: str, service: bool) -> Reply:
        # delete_ok / delete_missing / delete_anon_denied: a missing object is NoSuchKey for
        # any role (RLS hides it), an existing one is refused to non-service roles.
        if (bucket_name, key) not in self.objects:
            return json_reply(400, NO_KEY)
        if not service:
            return json_reply(400, DELETE_DENIED)
        del self.objects[(bucket_name, key)]
        return json_reply(200, {"message": "Successfully deleted"})

    def read(self, bucket_name: str, key: str, service: bool | None, public: bool = False) -> Reply:
        """GET/HEAD of an object; failures are 400 JSON (HEAD sends only the headers)."""
        bucket = self.buckets.get(bucket_name)
        if bucket is None or (public and not bucket.public):
            return json_reply(400, NO_BUCKET)
        blob = self.objects.get((bucket_name, key))
        if blob is None or not (public or service):
            return json_reply(400, NO_KEY)
        return (
            200,
            [
                ("accept-ranges", "bytes"),
                ("content-type", blob.content_type),
                ("etag", blob.etag),
                ("x-robots-tag", "none"),
                ("last-modified", http_date(blob.modified)),
                ("content-length", str(len(blob.data))),
                ("cache-control", blob.cache_control),
            ],
            blob.data,
        )

    def info(self, bucket_name: str, key: str, service: bool) -> Reply:
        if bucket_name not in self.buckets:
            return json_reply(400, NO_BUCKET)
        blob = self.objects.get((bucket_name, key)) if service else None
        if blob is None:
            return json_reply(400, NO_KEY)
        status, headers, payload = json_reply(
            200,
            {
                "id": blob.id,
                "name": key,
                "version": blob.version,
                "bucket_id": bucket_name,
                "size": len(blob.data),
                "content_type": blob.content_type,
                "cache_control": blob.cache_control,
                "etag": blob.etag,
                "metadata": {},
                "last_modified": iso_ms(blob.modified),
                "created_at": iso_ms(blob.created),
            },
        )
        # object_info_*: the object's own etag, last-modified and cache-control ride along.
        headers += [("etag", blob.etag), ("last-modified", http_date(blob.modified)),
                    ("cache-control", blob.cache_control)]  # fmt: skip
        return status, headers, payload

    def bucket_info(self, name: str, service: bool) -> Reply:
        bucket = self.buckets.get(name)
        if bucket is None or not service:
            return json_reply(400, NO_BUCKET)
        return json_reply(
            200,
            {
                "id": bucket.name,
                "name": bucket.name,
                "owner": "",
                "public": bucket.public,
                "file_size_limit": bucket.file_size_limit,
                "allowed_mime_types": bucket.allowed_mime_types,
                "created_at": iso_ms(bucket.created),
                "updated_at": iso_ms(bucket.created),
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


def _key(segments: list[str]) -> str:
    return unquote("/".join(segments))


def _invalid_key(shown: str, why: str = "") -> dict[str, str]:
    return storage_error("400", "InvalidKey", f"Invalid key: {shown}{why}", "InvalidKey")


def _bearer(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    return token if scheme.lower() == "bearer" and token else None
