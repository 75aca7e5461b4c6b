"""imagen-actors serve: the operator's web dashboard over the same database."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import trio

from imagen_actors.cli import exitcodes
from imagen_actors.cli.main import command
from imagen_actors.config import settings as config
from imagen_actors.core.errors import ConfigError, UsageError

DEFAULT_BIND = "127.0.0.1:8080"


def register(sub: Any) -> None:
    p = command(
        sub,
        "serve",
        "the operator's web dashboard: queue, workers, live progress, job pages, cancel/retry",
        run,
    )
    p.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        metavar="HOST:PORT",
        help=f"address to listen on (default {DEFAULT_BIND}; any non-loopback address needs "
        "--token-env; port 0 picks a free one)",
    )
    p.add_argument(
        "--token-env",
        metavar="NAME",
        default=None,
        help="environment variable holding the access token every request must carry",
    )


def read_token(name: str | None) -> str | None:
    if name is None:
        return None
    value = os.environ.get(name, "")
    if len(value) < 16:
        raise ConfigError(
            f"--token-env {name}: the variable is {'unset' if not value else 'too short'}; "
            f"export {name} with a random token of at least 16 characters "
            f"(e.g. `export {name}=$(openssl rand -hex 32)`)"
        )
    return value


def run(args: argparse.Namespace) -> int:
    # Imported here: the web stack is only needed by this command.
    try:
        from imagen_actors.web import security, server
    except ImportError as exc:
        raise UsageError(
            f"the dashboard needs the web extra ({exc.name} is missing); "
            "install it with `pip install 'imagen-actors[web]'`"
        ) from None
    bind = security.parse_bind(args.bind)
    security.require_token_for(bind, args.token_env)
    token = read_token(args.token_env)
    cfg = config.load(args.config)

    async def go() -> None:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(server.serve, cfg, bind, token)
            # One line on stderr names the address (tests and scripts read it).
            print(f"imagen-actors serve: dashboard on {' '.join(binds)}", file=sys.stderr)
            sys.stderr.flush()

    trio.run(go)
    return exitcodes.OK
