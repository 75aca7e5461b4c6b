"""Run the dashboard: the database (via the Gateway and its asyncio loop thread, db/bridge.py),
the LISTEN ticker and Hypercorn's Trio server, all in one nursery."""

from __future__ import annotations

import logging
from functools import partial
from typing import cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from hypercorn.typing import ASGIFramework

from imagen_actors.config.settings import Config
from imagen_actors.db.database import open_database
from imagen_actors.storage.registry import build_store
from imagen_actors.web import live
from imagen_actors.web.app import build_app
from imagen_actors.web.security import Bind

log = logging.getLogger(__name__)


def hypercorn_config(bind: Bind) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [bind.hypercorn()]
    # No access log: a ?token= visit must not leave the token in a log file.
    hc.accesslog = None
    hc.errorlog = log
    hc.include_server_header = False
    # Open event streams must not hold a Ctrl-C for long.
    hc.graceful_timeout = 2.0
    return hc


async def serve(
    cfg: Config,
    bind: Bind,
    token: str | None,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started`` gets the bound URLs."""
    async with open_database(cfg, application_name="imagen-actors serve") as gw:
        store = build_store(cfg.storage)
        try:
            async with trio.open_nursery() as nursery:
                ticks = live.Ticks()
                await nursery.start(live.listen_forever, gw, ticks)
                # Guard is a plain ASGI callable; hypercorn's TypedDict scopes are stricter.
                app = cast(ASGIFramework, build_app(gw, store, ticks, token=token))
                binds: list[str] = await nursery.start(
                    partial(hypercorn_serve, app, hypercorn_config(bind), mode="asgi")
                )
                task_status.started(binds)
        finally:
            with trio.move_on_after(5, shield=True):
                await store.aclose()
