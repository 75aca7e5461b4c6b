"""The Supabase store against a fake storage server on a real loopback socket."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from imagen_actors.config.settings import SupabaseStorageConfig
from imagen_actors.core.errors import ConfigError, StorageError
from imagen_actors.core.records import Checked
from imagen_actors.storage.registry import build_store
from imagen_actors.storage.supabase import SupabaseStore, build
from tests.fakes.supabase_storage import (
    ANON_KEY,
    EXPIRED_KEY,
    OTHER_SECRET_KEY,
    SERVICE_KEY,
    FakeSupabaseStorage,
    serve_fake_storage,
)
from tests.support.supabase import MakeStore, store_factory

# The 8x8 PNG from the captures (upload_ok.json).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAYAAADED76LAAAAEklEQVR42mM4UaHxHx9mGBkKAEIJmcEjU8t6AAAAAElFTkSuQmCC"
)
KEY = "2026-11-22/tiny-owl-42.png"
BUCKET = "imagen-generated"


@pytest.fixture
async def fake() -> AsyncIterator[FakeSupabaseStorage]:
    async with serve_fake_storage() as server:
        yield server
        assert server.violations == []


@pytest.fixture
async def make_store(
    fake: FakeSupabaseStorage, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakeStore]:
    async with store_factory(fake, monkeypatch, max_attempts=3) as make:
        yield make


async def test_upload_sends_the_documented_request(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """A put is one POST under /storage/v1 with auth, x-upsert, cache-control and Content-Length."""
    stored = await make_store().put(KEY, PNG, "image/png")

    assert stored.bucket == BUCKET and stored.key == KEY
    assert stored.location == f"{fake.url}/storage/v1/object/{BUCKET}/{KEY}"
    [req] = fake.requests
    assert (req.method, req.target) == ("POST", f"/storage/v1/object/{BUCKET}/{KEY}")
    assert req.headers["authorization"] == f"Bearer {SERVICE_KEY}"
    assert req.headers["apikey"] == SERVICE_KEY
    assert req.headers["x-upsert"] == "true"
    assert req.headers["content-type"] == "image/png"
    assert req.headers["cache-control"] == "max-age=3600"
    assert req.headers["content-length"] == str(len(PNG))
    assert "transfer-encoding" not in req.headers
    blob = fake.objects[(BUCKET, KEY)]
    assert (blob.data, blob.content_type) == (PNG, "image/png")


async def test_reupload_of_same_key_overwrites(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """Re-running an upload after a crash overwrites the object instead of failing."""
    store = make_store()
    await store.put(KEY, PNG, "image/png")
    first_id = fake.objects[(BUCKET, KEY)].id
    await store.put(KEY, PNG + b"v2", "image/png")

    assert fake.objects[(BUCKET, KEY)].data == PNG + b"v2"
    assert fake.objects[(BUCKET, KEY)].id == first_id
    assert len(fake.requests) == 2


async def test_delete_removes_the_object_and_a_missing_one_is_fine(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """delete() is idempotent: NoSuchKey (delete_missing) is success, like delete_ok."""
    store = make_store()
    await store.put(KEY, PNG, "image/png")
    await store.delete(KEY)
    await store.delete(KEY)

    assert (BUCKET, KEY) not in fake.objects
    assert [(r.method, r.target) for r in fake.requests[1:]] == [
        ("DELETE", f"/storage/v1/object/{BUCKET}/{KEY}")
    ] * 2


async def test_delete_refused_is_a_configuration_fault_and_5xx_is_retried(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """An anon key's delete (delete_anon_denied) fails at once; a 500 is retried."""
    await make_store().put(KEY, PNG, "image/png")
    with pytest.raises(StorageError, match="AccessDenied") as info:
        await make_store(key=ANON_KEY).delete(KEY)
    assert info.value.error_class == "configuration"  # a key that may not
    fake.fail_next(1, 500)
    await make_store().delete(KEY)

    assert (BUCKET, KEY) not in fake.objects


async def test_key_with_spaces_and_parens_is_percent_encoded(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """Allowed-but-special key characters travel percent-encoded and are stored decoded."""
    key = "2026-11-22/tiny owl (1).png"
    await make_store().put(key, PNG, "image/png")

    assert (
        fake.requests[0].target
        == f"/storage/v1/object/{BUCKET}/2026-11-22/tiny%20owl%20%281%29.png"
    )
    assert (BUCKET, key) in fake.objects


@pytest.mark.parametrize(
    ("setup", "key_value", "content_type", "cause", "fix"),
    [
        (
            "",
            OTHER_SECRET_KEY,
            "image/png",
            "signature verification failed",
            "check $SUPABASE_SERVICE_KEY",
        ),
        (
            "",
            EXPIRED_KEY,
            "image/png",
            '"exp" claim timestamp check failed',
            "check $SUPABASE_SERVICE_KEY",
        ),
        ("", "not-a-jwt", "image/png", "Invalid Compact JWS", "check $SUPABASE_SERVICE_KEY"),
        ("", ANON_KEY, "image/png", "row-level security", "service_role"),
        ("no-bucket", SERVICE_KEY, "image/png", "NoSuchBucket", "create bucket imagen-generated"),
        ("limit", SERVICE_KEY, "image/png", "EntityTooLarge (413)", "file size limit"),
        ("mime", SERVICE_KEY, "image/jpeg", "InvalidMimeType (415)", "allow image/jpeg"),
        ("strip-upsert", SERVICE_KEY, "image/png", "KeyAlreadyExists (409)", "x-upsert"),
    ],
)
async def test_client_errors_fail_at_once_with_a_useful_message(
    fake: FakeSupabaseStorage,
    make_store: MakeStore,
    setup: str,
    key_value: str,
    content_type: str,
    cause: str,
    fix: str,
) -> None:
    """Each 4xx-class body is a permanent error naming bucket, key, cause and fix, not retried."""
    if setup == "no-bucket":
        fake.buckets.clear()
    elif setup == "limit":
        fake.add_bucket(BUCKET, file_size_limit=16)
    elif setup == "mime":
        fake.add_bucket(BUCKET, allowed_mime_types=["image/png"])
    elif setup == "strip-upsert":
        fake.objects.clear()
        fake.ignore_upsert = True
        await make_store().put(KEY, PNG, content_type)
        fake.requests.clear()
    store = make_store(key=key_value)

    with pytest.raises(StorageError) as info:
        await store.put(KEY, PNG, content_type)

    message = str(info.value)
    # A bad key or a missing bucket is the store's configuration; the rest refuse this object.
    expected = "permanent" if setup in ("limit", "mime", "strip-upsert") else "configuration"
    assert info.value.error_class == expected
    assert f"{BUCKET}/{KEY}" in message
    assert cause in message
    assert fix in message
    assert len(fake.requests) == 1


async def test_gateway_5xx_is_retried_then_succeeds(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """A 500, a text 503 and a 429 SlowDown are retried; the fourth attempt stores the object."""
    fake.fail_next(1, 500)
    fake.fail_next(1, 503)
    fake.fail_next(1, 429)

    await make_store(max_attempts=4).put(KEY, PNG, "image/png")

    assert len(fake.requests) == 4
    assert fake.objects[(BUCKET, KEY)].data == PNG


async def test_persistent_5xx_is_a_dependency_fault_after_max_attempts(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """When every attempt gets a 500 the store stops after max_attempts with a transient error."""
    fake.fail_next(10, 500)

    with pytest.raises(StorageError) as info:
        await make_store(max_attempts=3).put(KEY, PNG, "image/png")

    assert info.value.error_class == "dependency"
    assert "after 3 attempt(s)" in str(info.value)
    assert f"{BUCKET}/{KEY}" in str(info.value)
    assert len(fake.requests) == 3


async def test_timeout_is_retried(fake: FakeSupabaseStorage, make_store: MakeStore) -> None:
    """A request that hangs past timeout_s is abandoned and retried on a fresh attempt."""
    fake.hang_next(1)

    await make_store(timeout_s=0.3).put(KEY, PNG, "image/png")

    assert len(fake.requests) == 2
    assert (BUCKET, KEY) in fake.objects


async def test_persistent_timeout_is_a_dependency_fault_and_chained(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """Timeouts on every attempt end in a transient StorageError raised from httpx's exception."""
    fake.hang_next(2)

    with pytest.raises(StorageError) as info:
        await make_store(timeout_s=0.2, max_attempts=2).put(KEY, PNG, "image/png")

    assert info.value.error_class == "dependency"
    assert isinstance(info.value.__cause__, httpx.TimeoutException)


async def test_connection_refused_is_a_dependency_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable server is retried, then reported as a transient error."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    monkeypatch.setenv("SUPABASE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)

    async with build(SupabaseStorageConfig(max_attempts=2), backoff_base_s=0.01) as store:
        with pytest.raises(StorageError) as info:
            await store.put(KEY, PNG, "image/png")

    assert info.value.error_class == "dependency"
    assert isinstance(info.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("missing", ["SUPABASE_URL", "SUPABASE_SERVICE_KEY"])
def test_missing_env_var_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    """build() fails fast with a ConfigError that names the unset variable."""
    monkeypatch.setenv("SUPABASE_URL", "https://example.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
    monkeypatch.delenv(missing)

    with pytest.raises(ConfigError, match=missing):
        build(SupabaseStorageConfig())


def test_non_http_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SUPABASE_URL that is not an http(s) URL is refused at build time, naming the variable."""
    monkeypatch.setenv("SUPABASE_URL", "example.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)

    with pytest.raises(ConfigError, match="SUPABASE_URL"):
        build(SupabaseStorageConfig())


@pytest.mark.parametrize(
    "key",
    [
        "",
        "2026-11-22/owl#42.png",
        "2026-11-22/eule-ü.png",
        "2026-11-22/../escape.png",
        "2026-11-22/",
        "/2026-11-22/owl.png",
        "2026-11-22//owl.png",
        "owl%2E.png",
    ],
)
async def test_invalid_keys_are_refused_before_any_request(
    fake: FakeSupabaseStorage, make_store: MakeStore, key: str
) -> None:
    """Keys the server would reject or misfile are refused client-side, permanently."""
    with pytest.raises(StorageError, match="invalid object key") as info:
        await make_store().put(key, PNG, "image/png")

    assert info.value.error_class == "permanent"
    assert fake.requests == []


async def test_empty_body_is_refused(fake: FakeSupabaseStorage, make_store: MakeStore) -> None:
    """An empty body would be stored as a 0-byte object, so it is refused before sending."""
    with pytest.raises(StorageError, match="empty body") as info:
        await make_store().put(KEY, b"", "image/png")

    assert info.value.error_class == "permanent"
    assert fake.requests == []


async def test_exists_reports_presence_via_authenticated_head(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """exists() is True after a put and False for a missing key (HEAD, then info for the reason)."""
    store = make_store()
    assert await store.exists(KEY) is False
    await store.put(KEY, PNG, "image/png")
    fake.requests.clear()

    assert await store.exists(KEY) is True
    [req] = fake.requests
    assert (req.method, req.target) == ("HEAD", f"/storage/v1/object/authenticated/{BUCKET}/{KEY}")


async def test_exists_with_a_bad_key_raises_instead_of_saying_missing(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """A refused lookup (bad JWT) is a permanent error, not a silent False."""
    with pytest.raises(StorageError, match="signature verification failed") as info:
        await make_store(key=OTHER_SECRET_KEY).exists(KEY)

    assert info.value.error_class == "configuration"


async def test_check_reports_ok_or_the_fix(
    fake: FakeSupabaseStorage, make_store: MakeStore
) -> None:
    """check() is 'ok' for a reachable bucket and names the fix for a missing one."""
    assert await make_store().check() == Checked(True, "ok")
    fake.buckets.clear()
    missing = await make_store().check()
    assert (missing.ok, missing.fault) == (False, "configuration")
    assert "create bucket imagen-generated" in missing.detail
    assert (await make_store(key=EXPIRED_KEY).check()).fault == "configuration"
    fake.outage = "502-html"
    down = await make_store().check()
    assert (down.ok, down.fault) == (False, "dependency")
    fake.outage = "544"
    assert (await make_store().check()).fault == "dependency"


async def test_registry_builds_the_supabase_store(
    fake: FakeSupabaseStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """build_store() on a supabase config yields a working SupabaseStore."""
    monkeypatch.setenv("SUPABASE_URL", fake.url + "/storage/v1/")
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
    store = build_store(SupabaseStorageConfig())
    try:
        assert isinstance(store, SupabaseStore)
        await store.put(KEY, PNG, "image/png")
    finally:
        await store.aclose()

    assert fake.requests[0].target.startswith("/storage/v1/object/")
