"""The fake Supabase Storage replays the real server's captured exchanges, so it cannot drift.

Each capture in /work/shared/fixtures/supabase-storage is sent byte for byte (method, raw path,
headers, body) over a loopback socket to the fake, set up as the real server was at that
moment; status, the headers that matter and the body (JSON modulo per-request ids and times,
bytes by sha256) must equal what the real server answered.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import h11
import pytest
import trio

from tests.fakes.http11 import next_event
from tests.fakes.supabase_storage import (
    SERVICE_KEY,
    Blob,
    Bucket,
    FakeSupabaseStorage,
    serve_fake_storage,
)

CAPTURES = Path("/work/shared/fixtures/supabase-storage")
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAYAAADED76LAAAAEklEQVR42mM4UaHxHx9mGBkKAEIJmcEjU8t6AAAAAElFTkSuQmCC"
)
OWL = "2026-11-22/tiny-owl-42.png"
# Captures of routes the fake serves, with what must differ from the default state
# (tiny-owl-42.png in imagen-generated and imagen-private): "-bucket/key" absent, "+..." present.
REPLAYED: dict[str, tuple[str, ...]] = {
    "status_ok": (),
    "bucket_get_ok": (),
    "bucket_get_missing": (),
    "upload_ok": (f"-imagen-generated/{OWL}",),
    "upload_duplicate": (),
    "upload_duplicate_xupsert_false": (),
    "upload_upsert": (),
    "upload_upsert_True_capitalised": (),
    "update_put_ok": (),
    "update_put_missing": (),
    "upload_no_content_type": (),
    "upload_anon_denied": (),
    "upload_no_auth": (),
    "upload_bad_jwt_signature": (),
    "upload_expired_jwt": (),
    "upload_malformed_jwt": (),
    "upload_apikey_header_only": (),
    "upload_missing_bucket": (),
    "upload_path_dotdot": (),
    "upload_path_dotdot_encoded": (),
    "upload_path_space_parens_ok": (),
    "upload_path_unicode_invalid": (),
    "upload_path_hash_invalid": (),
    "upload_path_trailing_slash": (),
    "upload_empty_body": (),
    "upload_too_large_global": (),
    "upload_too_large_bucket_limit": (),
    "upload_chunked_ok": (),
    "upload_too_large_bucket_limit_chunked": (),
    "upload_mime_not_allowed": (),
    "upload_limited_ok": (),
    "upload_private_bucket_ok": (f"-imagen-private/{OWL}",),
    "object_get_public_ok": (),
    "object_get_public_private_bucket": (),
    "object_get_public_missing": (),
    "object_get_authenticated_ok": (),
    "object_get_authenticated_anon_denied": (),
    "object_get_authenticated_no_auth": (),
    "object_get_plain_ok": (),
    "object_info_authenticated_ok": (),
    "object_info_missing": (),
    "object_head_public_ok": (),
    "object_head_authenticated_ok": (),
    "object_head_plain_ok": (),
    "object_head_missing": (),
    "delete_ok": ("+imagen-generated/2026-11-22/tiny-owl-43.png",),
    "delete_missing": (),
    "delete_anon_denied": (),
    "route_not_found": (),
    "gateway_prefix_on_raw_server": (),
}
HEADERS_THAT_MATTER = ("content-type", "content-length", "etag", "cache-control", "accept-ranges")
_IDS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIMES = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def capture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CAPTURES / f"{name}.json").read_text())
    return data


def body_bytes(body: dict[str, Any]) -> bytes:
    if body["kind"] == "empty":
        return b""
    if body["kind"] == "json":
        raw = json.dumps(body["json"], separators=(",", ":")).encode()
        return raw if len(raw) == body["size"] else json.dumps(body["json"]).encode()
    if "base64" in body:
        return base64.b64decode(body["base64"])
    head = base64.b64decode(body["head_base64"])
    return head + bytes(body["size"] - len(head))


def real_server_state() -> FakeSupabaseStorage:
    """The buckets the captures made (bucket_create_*) and the uploaded owl."""
    fake = FakeSupabaseStorage(gateway=False)
    fake.buckets = {
        "imagen-generated": Bucket("imagen-generated", public=True),
        "imagen-private": Bucket("imagen-private"),
        "imagen-limited": Bucket(
            "imagen-limited", file_size_limit=1024, allowed_mime_types=["image/png"]
        ),
    }
    for bucket in ("imagen-generated", "imagen-private"):
        fake.objects[(bucket, OWL)] = Blob("8fd56371-0000-4000-8000-000000000000", PNG,
                                           "image/png", "no-cache")  # fmt: skip
    return fake


def normalised(raw: bytes) -> Any:
    text = _TIMES.sub("<time>", _IDS.sub("<id>", raw.decode()))
    return json.loads(text)


async def exchange(
    url: str, method: str, target: str, headers: dict[str, str], body: bytes, chunked: bool
) -> tuple[int, dict[str, str], bytes]:
    """One request exactly as given (no path normalisation), over a fresh connection."""
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    conn = h11.Connection(h11.CLIENT)
    sent = [(k, v) for k, v in headers.items() if k.lower() != "host"]
    sent.insert(0, ("Host", f"{host}:{port}"))
    out = conn.send(h11.Request(method=method, target=target, headers=sent))
    if body:
        out += conn.send(h11.Data(data=body))
    out += conn.send(h11.EndOfMessage())
    async with stream:
        await stream.send_all(out)
        response = await next_event(conn, stream)
        assert isinstance(response, h11.Response), response
        received = b""
        while not isinstance(event := await next_event(conn, stream), h11.EndOfMessage):
            received += event.data
    assert not chunked or "transfer-encoding" in {k.lower() for k in headers}
    got = {k.decode().lower(): v.decode() for k, v in response.headers}
    return response.status_code, got, received


def apply(fake: FakeSupabaseStorage, changes: tuple[str, ...]) -> None:
    for change in changes:
        bucket, _, key = change[1:].partition("/")
        if change[0] == "-":
            del fake.objects[(bucket, key)]
        else:
            fake.objects[(bucket, key)] = Blob("9ee9b940-0000-4000-8000-000000000000", PNG,
                                               "image/png", "no-cache")  # fmt: skip


async def replay(fake: FakeSupabaseStorage, name: str, *, target: str | None = None,
                 extra: dict[str, str] | None = None) -> None:  # fmt: skip
    cap = capture(name)
    req, want = cap["request"], cap["response"]
    status, headers, body = await exchange(
        fake.url,
        req["method"],
        target or req["path"],
        {**req["headers"], **(extra or {})},
        body_bytes(req["body"]),
        req.get("body_sent_chunked", False),
    )
    assert status == want["status"], (name, status, body[:300])
    for header in HEADERS_THAT_MATTER:
        assert headers.get(header) == want["headers"].get(header), (name, header)
    expected = want["body"]
    if expected["kind"] == "json":
        assert normalised(body) == normalised(json.dumps(expected["json"]).encode()), name
    elif expected["kind"] == "empty":
        assert body == b"", name
    else:
        assert hashlib.sha256(body).hexdigest() == expected["sha256"], name


@pytest.mark.parametrize("name", sorted(REPLAYED))
async def test_fake_answers_like_the_real_server(name: str) -> None:
    """Every captured exchange the fake serves gets the real server's reply."""
    fake = real_server_state()
    apply(fake, REPLAYED[name])
    async with serve_fake_storage(fake):
        await replay(fake, name)


@pytest.mark.parametrize("name", ["upload_ok", "delete_missing", "object_info_missing"])
async def test_through_the_gateway_the_same_exchange_gets_the_same_reply(name: str) -> None:
    """Behind the gateway (``/storage/v1`` + ``apikey``) the storage server answers as bare."""
    fake = real_server_state()
    fake.gateway = True
    apply(fake, REPLAYED[name])
    cap = capture(name)
    async with serve_fake_storage(fake):
        await replay(fake, name, target=cap["request"]["path_behind_supabase_gateway"],
                     extra={"apikey": SERVICE_KEY})  # fmt: skip
    assert fake.violations == [] or all("x-upsert" in v for v in fake.violations)


def test_every_replayed_capture_exists_and_the_keys_are_the_captured_tokens() -> None:
    """The replay list names real captures, and SERVICE_KEY is the captures' service JWT."""
    names = {p.stem for p in CAPTURES.glob("*.json")}
    assert set(REPLAYED) <= names
    auth = capture("upload_ok")["request"]["headers"]["Authorization"]
    assert auth == f"Bearer {SERVICE_KEY}"
