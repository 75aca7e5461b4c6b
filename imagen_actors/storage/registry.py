"""Build the configured object store."""

from __future__ import annotations

import importlib

from imagen_actors.config.settings import LocalStorageConfig, StorageConfig
from imagen_actors.storage.base import ObjectStore
from imagen_actors.storage.local import LocalStore


def build_store(cfg: StorageConfig) -> ObjectStore:
    if isinstance(cfg, LocalStorageConfig):
        return LocalStore(cfg.resolved_root(), cfg.bucket)
    # Imported only when configured: the Supabase adapter owns its HTTP client.
    supabase = importlib.import_module("imagen_actors.storage.supabase")
    store: ObjectStore = supabase.build(cfg)
    return store
