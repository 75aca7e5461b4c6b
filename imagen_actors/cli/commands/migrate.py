"""imagen-actors migrate: apply the bundled SQL migrations (a no-op when current)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import trio

from imagen_actors.cli.main import command
from imagen_actors.config import settings as config
from imagen_actors.db import database
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.migrations import migrate


def register(sub: Any) -> None:
    command(
        sub,
        "migrate",
        "apply the bundled schema migrations as the schema owner; re-running is a no-op "
        "(the worker only checks that they are current)",
        run,
    )


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)

    async def go() -> None:
        dsn, is_embedded = await database.resolve_dsn(cfg)
        async with Gateway.open(dsn, application_name="imagen-actors migrate") as gw:
            applied = await migrate(gw)
        where = "embedded Postgres" if is_embedded else "database"
        print(f"{where}: {dsn}", file=sys.stderr)
        if applied:
            print(f"applied {len(applied)} migration(s): {', '.join(applied)}", file=sys.stderr)
        else:
            print("schema is up to date; nothing to apply", file=sys.stderr)
        if not is_embedded:
            print(
                "workers connect as a login granted imagen_worker, e.g. CREATE ROLE "
                "imagen_worker_host1 LOGIN PASSWORD '...' IN ROLE imagen_worker "
                "(docs/setup-worker.md)",
                file=sys.stderr,
            )
        print(dsn)

    trio.run(go)
    return 0
