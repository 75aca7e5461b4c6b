"""SupabaseStore instances against the loopback fake, closed when the test ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from imagen_actors.config.settings import SupabaseStorageConfig
from imagen_actors.storage.supabase import SupabaseStore, build
from tests.fakes.supabase_storage import SERVICE_KEY, FakeSupabaseStorage

MakeStore = Callable[..., SupabaseStore]


@asynccontextmanager
async def store_factory(
    fake: FakeSupabaseStorage, monkeypatch: pytest.MonkeyPatch, *, max_attempts: int
) -> AsyncIterator[MakeStore]:
    """``make(key=..., **config overrides)`` builds a store on the fake's URL, with quick
    backoff; every store made is closed on the way out."""
    stores: list[SupabaseStore] = []
    monkeypatch.setenv("SUPABASE_URL", fake.url)

    def make(*, key: str = SERVICE_KEY, **overrides: object) -> SupabaseStore:
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", key)
        fields: dict[str, object] = {"max_attempts": max_attempts, "timeout_s": 5.0, **overrides}
        store = build(SupabaseStorageConfig(**fields), backoff_base_s=0.01)  # type: ignore[arg-type]
        stores.append(store)
        return store

    try:
        yield make
    finally:
        for store in stores:
            await store.aclose()
