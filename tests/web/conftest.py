from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from imagen_actors.config.settings import Config
from tests.support.worker import make_config

pytest.importorskip("starlette", reason="the dashboard needs the web extra (pip install .[web])")
pytest.importorskip("hypercorn", reason="the dashboard needs the web extra (pip install .[web])")


@asynccontextmanager
async def dashboard(cfg: Config, token: str | None = None) -> AsyncIterator[str]:
    """The real server (Hypercorn's Trio worker) on a free loopback port; yields its URL."""
    from imagen_actors.web.security import Bind
    from imagen_actors.web.server import serve

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, cfg, Bind("127.0.0.1", 0), token)
        yield binds[0]
        nursery.cancel_scope.cancel()


@pytest.fixture
def web_config(tmp_path: Path, database_url: str) -> Config:
    return make_config(tmp_path, database_url)
