"""Everything a worker process needs, opened and closed together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs

from imagen_actors.backends.registry import Backends
from imagen_actors.config.settings import Config, in_file
from imagen_actors.core.errors import ConfigError
from imagen_actors.db.database import open_database
from imagen_actors.db.gateway import Gateway
from imagen_actors.storage.base import ObjectStore
from imagen_actors.storage.registry import build_store
from imagen_actors.worker.identity import worker_id as make_worker_id


@attrs.frozen
class Runtime:
    cfg: Config
    gateway: Gateway
    store: ObjectStore
    backends: Backends
    worker_id: str


@asynccontextmanager
async def open_runtime(cfg: Config) -> AsyncIterator[Runtime]:
    wid = make_worker_id(cfg)
    try:
        store = build_store(cfg.storage)
    except ConfigError as exc:
        raise in_file(exc, cfg) from exc
    backends = Backends(cfg)  # built lazily, each instance at its first job
    try:
        async with open_database(cfg, application_name=wid) as gw:
            yield Runtime(cfg, gw, store, backends, wid)
    finally:
        await backends.aclose()
        await store.aclose()
