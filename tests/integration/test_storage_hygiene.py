"""What a person sees when Supabase Storage fails: hints that fire on the real server's
bodies, one-line bounded errors without HTML pages or server paths, key and URL handling.
All against the fake storage server on a real loopback socket."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from imagen_actors.config.settings import SupabaseStorageConfig, parse
from imagen_actors.core.errors import ConfigError, StorageError
from imagen_actors.observability.logs import configure_logging
from imagen_actors.storage.supabase import build
from tests.fakes.supabase_replies import BAD_GATEWAY_HTML, json_reply, storage_error
from tests.fakes.supabase_storage import (
    ANON_KEY,
    SECRET_KEY,
    FakeSupabaseStorage,
    serve_fake_storage,
)
from tests.support.supabase import MakeStore, store_factory

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAYAAADED76LAAAAEklEQVR42mM4UaHxHx9mGBkKAEIJmcEjU8t6AAAAAElFTkSuQmCC"
)
KEY = "2026-11-22/tiny-owl-42.png"
BUCKET = "imagen-generated"
CAPTURES = Path("/work/shared/fixtures/supabase-storage")


@pytest.fixture
async def fake() -> AsyncIterator[FakeSupabaseStorage]:
    async with serve_fake_storage() as server:
        yield server


@pytest.fixture
async def make_store(
    fake: FakeSupabaseStorage, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeStore]:
    async with store_factory(fake, monkeypatch, max_attempts=2) as make:
        yield make


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger (and httpx's), with handlers and levels restored afterwards."""
    root, httpx_log = logging.getLogger(), logging.getLogger("httpx")
    handlers, level, httpx_level = list(root.handlers), root.level, httpx_log.level
    yield root
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    httpx_log.setLevel(httpx_level)


def assert_hygienic(message: str) -> None:
    assert "\n" not in message and "\r" not in message
    assert len(message) <= 500, len(message)
    assert "<html" not in message.lower() and "</" not in message


# -- the wrong-URL hint and a storage server without the gateway ------------------------


async def test_wrong_url_hint_fires_on_the_real_servers_404(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """/storage/v1 sent to a bare storage server is Fastify's 404 "Not Found": the error says
    to check the URL and how to reach a server without the gateway."""
    fake.gateway = False
    with pytest.raises(StorageError) as info:
        await make_store().put(KEY, PNG, "image/png")

    message = str(info.value)
    assert info.value.error_class == "configuration"  # a wrong URL is the store's configuration
    assert "check $SUPABASE_URL" in message
    assert 'storage.path_prefix: ""' in message
    assert_hygienic(message)


async def test_empty_path_prefix_reaches_a_bare_storage_server(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """storage.path_prefix "" sends routes at the URL's root (self-hosted storage, no gateway)."""
    fake.gateway = False
    store = make_store(path_prefix="")
    stored = await store.put(KEY, PNG, "image/png")
    assert await store.exists(KEY) is True

    assert [r.target for r in fake.requests[:2]] == [
        f"/object/{BUCKET}/{KEY}",
        f"/object/authenticated/{BUCKET}/{KEY}",
    ]
    assert stored.location == f"{fake.url}/object/{BUCKET}/{KEY}"
    assert fake.objects[(BUCKET, KEY)].data == PNG


@pytest.mark.parametrize("prefix", ["storage/v1", "/storage/v1/", "/a b", "/x?y"])
def test_a_malformed_path_prefix_is_a_config_error(prefix: str) -> None:
    """path_prefix is '' or /segments without a trailing '/'; anything else names the key."""
    text = f"storage:\n  type: supabase\n  path_prefix: {json.dumps(prefix)}\n"
    with pytest.raises(ConfigError, match=r"storage\.path_prefix must be .* \(in test\.yaml\)"):
        parse(text, source="test.yaml")


# -- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_service_key_is_called_empty_not_unset(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SUPABASE_URL", "https://example.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", value)

    with pytest.raises(ConfigError) as info:
        build(SupabaseStorageConfig())

    assert "SUPABASE_SERVICE_KEY is set but empty" in str(info.value)
    assert "not set" not in str(info.value)


async def test_a_new_style_secret_key_is_sent_as_it_is(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """An sb_secret_ key is not a JWT: it goes unchanged as apikey and Bearer, and the
    gateway lets it through as service_role."""
    await make_store(key=SECRET_KEY).put(KEY, PNG, "image/png")

    [req] = fake.requests
    assert req.headers["apikey"] == SECRET_KEY
    assert req.headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert fake.objects[(BUCKET, KEY)].data == PNG
    assert fake.violations == []


# -- what the aligned fake now says, as the client sees it ------------------------------


async def test_exists_on_a_missing_bucket_says_create_it(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """info on a missing bucket is NoSuchBucket, so exists() raises instead of saying False."""
    fake.buckets.clear()
    with pytest.raises(StorageError, match="create bucket imagen-generated") as info:
        await make_store().exists(KEY)
    assert info.value.error_class == "configuration"


async def test_anon_delete_of_a_missing_object_is_not_an_error(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """RLS hides rather than refuses: the real server says NoSuchKey, so delete() is done."""
    await make_store(key=ANON_KEY).delete(KEY)
    assert [r.method for r in fake.requests] == ["DELETE"]


async def test_anon_oversize_upload_is_told_the_size_first(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """Bucket, then size, then RLS: an anon key's oversize upload gets EntityTooLarge."""
    fake.add_bucket(BUCKET, file_size_limit=16)
    with pytest.raises(StorageError, match=r"EntityTooLarge \(413\)"):
        await make_store(key=ANON_KEY).put(KEY, PNG, "image/png")


# -- outages and error hygiene ----------------------------------------------------------


async def test_a_gateways_html_502_is_one_line_without_the_page(
    fake: FakeSupabaseStorage, make_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The page stays in the exception's cause and the DEBUG log, not in the message."""
    fake.outage = "502-html"
    with caplog.at_level(logging.DEBUG, logger="imagen_actors.storage"):
        with pytest.raises(StorageError) as info:
            await make_store(max_attempts=2).put(KEY, PNG, "image/png")

    message = str(info.value)
    assert info.value.error_class == "dependency"
    assert "HTTP 502" in message and "HTML page" in message and "502 Bad Gateway" in message
    assert_hygienic(message)
    assert BAD_GATEWAY_HTML.decode() in str(info.value.__cause__)
    assert any("<center>nginx</center>" in r.getMessage() for r in caplog.records)
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    ("outage", "said"),
    [("544", "DatabaseTimeout (544)"), ("500-internal", "Internal (500)")],
)
async def test_database_outages_are_dependency_faults_and_named(
    fake: FakeSupabaseStorage, make_store: MakeStore, outage: str, said: str
) -> None:
    """544 DatabaseTimeout and 500 Internal are retried, then a transient error naming them."""
    fake.outage = outage  # type: ignore[assignment]
    with pytest.raises(StorageError) as info:
        await make_store(max_attempts=3).put(KEY, PNG, "image/png")

    assert info.value.error_class == "dependency"
    assert said in str(info.value)
    assert_hygienic(str(info.value))
    assert len(fake.requests) == 3
    fake.outage = None
    await make_store().put(KEY, PNG, "image/png")


async def test_a_server_file_path_in_a_storage_message_is_left_out(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """The file backend's InvalidKey names its on-disk path (upload_path_dotdot.json): the
    error keeps the code and our key, not the path."""
    captured = json.loads((CAPTURES / "upload_path_dotdot.json").read_text())
    body = captured["response"]["body"]["json"]
    fake.script.append(json_reply(400, body))

    with pytest.raises(StorageError) as info:
        await make_store().put(KEY, PNG, "image/png")

    message = str(info.value)
    assert "InvalidKey" in message and f"{BUCKET}/{KEY}" in message
    assert "stub/stub" not in message and "73faebdc" not in message
    assert_hygienic(message)


async def test_an_endless_multi_line_message_is_cut_to_one_bounded_line(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    detail = "first line\n" + "x" * 3000 + "\n  at /srv/storage/dist/index.js:1:1"
    body = storage_error("400", "Error", detail, "InvalidRequest")
    fake.script.append(json_reply(400, body))

    with pytest.raises(StorageError) as info:
        await make_store().put(KEY, PNG, "image/png")

    message = str(info.value)
    assert message.startswith(f"Supabase storage refused upload of {BUCKET}/{KEY}")
    assert "first line" in message and "/srv/storage" not in message
    assert_hygienic(message)


# -- httpx's own log lines --------------------------------------------------------------


@pytest.mark.parametrize(("level", "shown"), [(logging.INFO, False), (logging.DEBUG, True)])
async def test_httpx_request_lines_only_show_at_debug(
    fake: FakeSupabaseStorage,
    make_store: MakeStore,
    root_logger: logging.Logger,
    level: int,
    shown: bool,
) -> None:
    """httpx logs every request at INFO; our logging set-up keeps that to DEBUG runs."""
    out = io.StringIO()
    configure_logging(False, level, stream=out)
    await make_store().put(KEY, PNG, "image/png")

    assert ("HTTP Request: POST" in out.getvalue()) is shown


async def test_a_long_reason_is_cut_before_the_fix(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """With a long key and a long server text the 500 characters keep what failed and the fix."""
    key = "2026-11-22/" + "a-very-long-slug-" * 14 + "42.png"
    body = storage_error("404", "Bucket not found", "Bucket not found " * 40, "NoSuchBucket")
    fake.script.append(json_reply(400, body))

    with pytest.raises(StorageError) as info:
        await make_store().put(key, PNG, "image/png")

    message = str(info.value)
    assert f"{BUCKET}/{key}" in message
    assert message.endswith("or set storage.bucket to an existing one")
    assert_hygienic(message)
