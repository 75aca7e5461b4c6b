"""Open the configured database (or the embedded one), checked (or migrated) and ready."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from imagen_actors.config.settings import Config
from imagen_actors.db import embedded
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.migrations import check_current, migrate


async def resolve_dsn(cfg: Config) -> tuple[str, bool]:
    """(dsn, is_embedded)."""
    dsn = cfg.database_url()
    if dsn:
        return dsn, False
    return await embedded.start_async(), True


@asynccontextmanager
async def open_database(
    cfg: Config, *, application_name: str = "imagen-actors"
) -> AsyncIterator[Gateway]:
    """The embedded database is ours alone: it is kept migrated. A configured (shared) server
    is migrated on purpose, by ``imagen-actors migrate`` as the schema owner; everything else
    (worker, generate, submit, status...) only checks with a read that it is current, so it
    runs as the least-privilege imagen_worker role, which may create nothing."""
    dsn, is_embedded = await resolve_dsn(cfg)
    async with Gateway.open(
        dsn,
        application_name=application_name,
        pool_size=cfg.database.pool_size,
        statement_timeout_ms=cfg.database.statement_timeout_ms,
    ) as gw:
        if is_embedded:
            await migrate(gw)
        else:
            await check_current(gw)
        yield gw
