"""imagen-actors embedded status|stop: the zero-config Postgres that commands start and leave
running for the next one."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from imagen_actors.cli import exitcodes
from imagen_actors.cli.main import command
from imagen_actors.db import embedded


def register(sub: Any) -> None:
    p = command(sub, "embedded", "status or stop the embedded Postgres (no DSN configured)", run)
    p.add_argument("action", choices=("status", "stop"), help="what to do")


def run(args: argparse.Namespace) -> int:
    pgdata = embedded.pgdata_path()
    running = embedded.running(pgdata)
    if args.action == "status":
        state = f"running (pid {running})" if running else "not running"
        print(f"embedded Postgres in {pgdata}: {state}")
        return exitcodes.OK
    if not running:
        print(f"embedded Postgres in {pgdata} is not running", file=sys.stderr)
        return exitcodes.OK
    embedded.stop(pgdata)
    print(f"stopped the embedded Postgres in {pgdata}", file=sys.stderr)
    return exitcodes.OK
