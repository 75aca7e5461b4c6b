"""imagen-actors retry JOB: what the owner UI's retry button does (``imagen.retry_job``): a
failed or cancelled job goes back to pending with a fresh attempt budget, in its own stream."""

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

RETRYABLE = ("failed", "cancelled")


def register(sub: Any) -> None:
    p = command(sub, "retry", "put a failed or cancelled job back in the queue", run)
    p.add_argument("job", type=arguments.uuid_of("job id"), help="the job's id")


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    job_id: uuid.UUID = args.job

    async def go() -> int:
        async with database.open_database(cfg, application_name="imagen-actors retry") as gw:
            row = await gw.fetchrow("load_job", job_id)
            if row is not None and row["status"] not in RETRYABLE:
                print(
                    f"imagen-actors retry: job {job_id} is {row['status']}: only a failed or "
                    "cancelled job can be retried (cancel it first, or wait until it ends)",
                    file=sys.stderr,
                )
                return exitcodes.JOB_FAILED
            try:
                status = await gw.retry_job(job_id)
            except JobNotFoundError as exc:
                print(f"imagen-actors retry: {exc}", file=sys.stderr)
                return exitcodes.USAGE
        print(f"job {job_id} is pending again with a fresh attempt budget", file=sys.stderr)
        print(status)
        return exitcodes.OK

    return trio.run(go)
