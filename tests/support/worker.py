"""Run a real worker in-process (or as a subprocess) against a test database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import yaml

from imagen_actors.config import settings as config
from imagen_actors.db.gateway import Gateway
from imagen_actors.worker.daemon import run_worker
from imagen_actors.worker.handle import WorkerHandle
from imagen_actors.worker.runtime import open_runtime

TERMINAL = ("done", "failed", "cancelled")


def make_config(
    tmp: Path,
    dsn: str,
    *,
    name: str = "t1",
    lease_s: float = 30,
    poll_interval_s: float = 0.5,
    backends: dict[str, Any] | None = None,
    max_attempts: int = 3,
    storage: dict[str, Any] | None = None,
    **worker: Any,
) -> config.Config:
    doc = {
        # The first configured backend when the config has no "mock" (a host with other ones).
        "default_backend": "mock" if not backends or "mock" in backends else min(backends),
        "database": {"url": dsn},
        "output": {"directory": str(tmp / "out")},
        "storage": storage or {"type": "local", "root": str(tmp / "objects")},
        "worker": {
            "name": name,
            "lease_s": lease_s,
            "poll_interval_s": poll_interval_s,
            "max_attempts": max_attempts,
            "reap_interval_s": 0.5,
            # A job for a backend nobody offers fails at its first claim, not after 600 s;
            # tests of the grace itself pass their own.
            "unserved_backend_grace_s": 0,
            **worker,
        },
        "backends": backends or {"mock": {"type": "mock", "latency_ms": 0}},
    }
    path = tmp / f"imagen-{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return config.load(path)


@asynccontextmanager
async def running_worker(cfg: config.Config) -> AsyncIterator[tuple[WorkerHandle, Gateway]]:
    async with open_runtime(cfg) as rt, trio.open_nursery() as nursery:
        handle = await nursery.start(
            lambda task_status: run_worker(
                cfg, rt.gateway, rt.store, rt.backends, rt.worker_id, task_status=task_status
            )
        )
        with trio.fail_after(10):
            await handle.listening.wait()
        yield handle, rt.gateway
        handle.abort()


async def wait_terminal(gw: Gateway, job_id: uuid.UUID, timeout: float = 20) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            row = await gw.fetchrow("load_job", job_id)
            if row is not None and row["status"] in TERMINAL:
                return row
            await trio.sleep(0.02)


async def wait_all_terminal(gw: Gateway, timeout: float = 60) -> None:
    with trio.fail_after(timeout):
        while True:
            left = await gw.fetch_sql(
                "SELECT count(*) AS n FROM imagen.jobs WHERE status NOT IN "
                "('done', 'failed', 'cancelled')"
            )
            if left[0]["n"] == 0:
                return
            await trio.sleep(0.05)


def worker_process(config_path: Path, *, name: str) -> subprocess.Popen[bytes]:
    """A real worker process; its stderr goes to ``<config>.<name>.log`` beside the config."""
    env = {**os.environ, "IMAGEN_WORKER_NAME": name, "PYTHONUNBUFFERED": "1"}
    log_path = config_path.with_suffix(f".{name.replace(':', '_')}.log")
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "imagen_actors", "worker", "--config", str(config_path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
