"""The fake Supabase Storage's model and replies: the real server's JWT check and bodies.

Every body here is the shape captured from the real storage-api server in
/work/shared/fixtures/supabase-storage (see its README), or, where named, what
/work/shared/reference/measured-2026-12.md records of the real server under an outage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from collections import Counter
from typing import Any

import attrs

# The captures' AUTH_JWT_SECRET: tokens made with it are the ones in the captured requests.
JWT_SECRET = "local-test-secret-imagen-0123456789abcdef"
OTHER_SECRET = "some-other-secret-0123456789abcdef"

Reply = tuple[int, list[tuple[str, str]], bytes]
JSON_TYPE = "application/json; charset=utf-8"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_jwt(claims: dict[str, Any], secret: str = JWT_SECRET) -> str:
    """An HS256 JWT laid out like PyJWT's (the captures' tokens are byte-identical)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(signature.digest())}"


def verify_jwt(token: str, secret: str = JWT_SECRET) -> tuple[str | None, str]:
    """``(role, "")`` for a valid token, else ``(None, the server's AccessDenied message)``."""
    parts = token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError(token)
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except ValueError:
        return None, "Invalid Compact JWS"
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None, "Invalid Compact JWS"
    if header.get("alg") != "HS256":
        return None, "signature verification failed"
    expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.digest(), signature):
        return None, "signature verification failed"
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp <= time.time():
        return None, '"exp" claim timestamp check failed'
    return str(claims.get("role", "")), ""


def storage_error(status: str, error: str, message: str, code: str) -> dict[str, str]:
    """The real key order: statusCode, error, message, code."""
    return {"statusCode": status, "error": error, "message": message, "code": code}


DUPLICATE = storage_error("409", "Duplicate", "The resource already exists", "KeyAlreadyExists")
RLS_DENIED = storage_error(
    "403", "Unauthorized", "new row violates row-level security policy", "AccessDenied"
)
DELETE_DENIED = storage_error("403", "Unauthorized", "Access denied", "AccessDenied")
NO_AUTH = storage_error(
    "400", "Error", "headers must have required property 'authorization'", "InvalidRequest"
)
NO_BUCKET = storage_error("404", "Bucket not found", "Bucket not found", "NoSuchBucket")
NO_KEY = storage_error("404", "not_found", "Object not found", "NoSuchKey")
TOO_LARGE = storage_error(
    "413", "Payload too large", "The object exceeded the maximum allowed size", "EntityTooLarge"
)
SLOW_DOWN = storage_error("429", "too_many_connections", "Too many connections", "SlowDown")
# measured-2026-12.md: the real server with its database down answers 500 "error":"Internal"
# (storage-api's catch-all body), and after its database stalls 544 DatabaseTimeout.
INTERNAL: dict[str, str] = {
    "statusCode": "500",
    "error": "Internal",
    "message": "Internal Server Error",
}
DATABASE_TIMEOUT = storage_error(
    "544", "DatabaseTimeout", "The connection to the database timed out", "DatabaseTimeout"
)
# What a gateway (nginx, Cloudflare, a load balancer) in front sends when storage is away.
BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n" + b"<!-- a padding comment some gateways add -->\r\n" * 8
)


def json_reply(status: int, body: Any, content_type: str = JSON_TYPE) -> Reply:
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return status, [("content-type", content_type), ("content-length", str(len(payload)))], payload


def html_reply(status: int, page: bytes) -> Reply:
    headers = [("content-type", "text/html"), ("content-length", str(len(page)))]
    return status, headers, page


def route_not_found(method: str, path: str) -> Reply:
    """Fastify's 404. Under a known prefix (``GET /object``, route_not_found.json) storage-api
    renders it as InvalidRequest with a string statusCode and a bare ``application/json``;
    a wholly unknown path (gateway_prefix_on_raw_server.json) gets Fastify's own body."""
    message = f"Route {method}:{path} not found"
    if path.split("/")[1] in ("object", "bucket"):
        body = storage_error("404", "Not Found", message, "InvalidRequest")
        return json_reply(404, body, "application/json")
    return json_reply(404, {"message": message, "error": "Not Found", "statusCode": 404})


def http_date(unix: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(unix))


def iso_ms(unix: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(unix)) + f".{int(unix * 1000) % 1000:03d}Z"
    )


@attrs.define
class Bucket:
    name: str
    file_size_limit: int | None = None
    allowed_mime_types: list[str] | None = None
    public: bool = False
    created: float = attrs.field(factory=time.time)


@attrs.define
class Blob:
    id: str
    data: bytes
    content_type: str
    cache_control: str
    version: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    created: float = attrs.field(factory=time.time)
    modified: float = attrs.field(factory=time.time)

    @property
    def etag(self) -> str:
        return f'"{hashlib.md5(self.data, usedforsecurity=False).hexdigest()}"'


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
