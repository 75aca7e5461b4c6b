"""Open the configured database (or the embedded one), migrated and ready."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from imagen_actors.config.settings import Config
from imagen_actors.db import embedded
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.migrations import migrate


async def resolve_dsn(cfg: Config) -> tuple[str, bool]:
    """(dsn, is_embedded)."""
    dsn = cfg.database_url()
    if dsn:
        return dsn, False
    return await embedded.start_async(), True


@asynccontextmanager
async def open_database(
    cfg: Config, *, application_name: str = "imagen-actors", auto_migrate: bool = True
) -> AsyncIterator[Gateway]:
    dsn, is_embedded = await resolve_dsn(cfg)
    async with Gateway.open(
        dsn,
        application_name=application_name,
        pool_size=cfg.database.pool_size,
        statement_timeout_ms=cfg.database.statement_timeout_ms,
    ) as gw:
        # The embedded database is ours alone: keep it migrated. A shared server is
        # migrated on purpose, by 'imagen-actors migrate', but a worker also migrates at
        # start (advisory-locked, a no-op when current) so a fresh install just works.
        if auto_migrate or is_embedded:
            await migrate(gw)
        yield gw
