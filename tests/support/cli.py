"""Run the real CLI (``python -m imagen_actors``) as a subprocess, the way an operator does."""

from __future__ import annotations

import os
import subprocess
import sys

import trio


async def run_cli(database_url: str | None, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Exit status and output of ``imagen-actors ARGS``; with ``database_url``, pointed at it
    through IMAGEN_WORKER_DATABASE_URL (None: the environment as it is)."""
    env = dict(os.environ)
    if database_url is not None:
        env["IMAGEN_WORKER_DATABASE_URL"] = database_url
    result: subprocess.CompletedProcess[bytes] = await trio.run_process(
        [sys.executable, "-m", "imagen_actors", *args],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result
