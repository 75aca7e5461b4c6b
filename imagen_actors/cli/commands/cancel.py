"""imagen-actors cancel JOB [--reason TEXT]: what the owner UI's cancel button does
(``imagen.cancel_job``): a pending job is cancelled at once; a running one is stopped by the
worker holding it; a finished one is left as it is."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

import trio

from imagen_actors.cli import arguments, exitcodes
from imagen_actors.cli.main import command
from imagen_actors.config import settings as config
from imagen_actors.core.errors import JobNotFoundError
from imagen_actors.db import database

TERMINAL = ("done", "failed", "cancelled")


def register(sub: Any) -> None:
    p = command(sub, "cancel", "cancel a job (pending: at once; running: the worker stops it)", run)
    p.add_argument("job", type=arguments.uuid_of("job id"), help="the job's id")
    p.add_argument("--reason", help="why (shown as the job's error; default: cancel requested)")


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    job_id: uuid.UUID = args.job

    async def go() -> int:
        async with database.open_database(cfg, application_name="imagen-actors cancel") as gw:
            before = await gw.fetchrow("load_job", job_id)
            try:
                status = await gw.cancel_job(job_id, args.reason)
            except JobNotFoundError as exc:
                print(f"imagen-actors cancel: {exc}", file=sys.stderr)
                return exitcodes.USAGE
        was = before["status"] if before else None
        if was in TERMINAL:
            print(f"job {job_id} is already {was}: nothing to cancel", file=sys.stderr)
        elif status == "running":
            print(
                f"job {job_id} is running: cancel requested; the worker holding it stops it",
                file=sys.stderr,
            )
        else:
            print(f"job {job_id} cancelled", file=sys.stderr)
        print(status)
        return exitcodes.OK

    return trio.run(go)
