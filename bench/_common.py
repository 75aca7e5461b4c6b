"""Shared plumbing for the benchmark scripts in bench/.

Each script gets a private database (an embedded pgserver cluster in a temp dir, or a fresh
database created on $IMAGEN_BENCH_DATABASE_URL and dropped afterwards), migrates it, runs
one worker in-process (mock backend, local storage in the temp dir) and reads every figure
back from the database's own timestamps (imagen.jobs / imagen.job_events), so the numbers
use one clock and do not depend on Python-side timers.

These are measurements, not tests: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio
import yaml

from imagen_actors import config
from imagen_actors.daemon import WorkerHandle, run_worker
from imagen_actors.gateway import Gateway
from imagen_actors.migrations import migrate
from imagen_actors.storage.base import ObjectStore
from imagen_actors.worker_runtime import open_runtime

ENV_BENCH_DATABASE_URL = "IMAGEN_BENCH_DATABASE_URL"
OWNER = uuid.UUID("00000000-0000-4000-8000-00000000be4c")
TERMINAL = ("done", "failed", "cancelled")


def parser(description: str, *, default_n: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--n", type=int, default=default_n, help=f"jobs (default {default_n})")
    p.add_argument("--size", type=int, default=64, help="image width = height (default 64)")
    return p


# ---- database -------------------------------------------------------------------------


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _admin(dsn: str, sql: str) -> None:
    import asyncpg  # plain asyncio for admin statements, outside the worker's trio run

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@contextmanager
def private_database(tmp: Path) -> Iterator[tuple[str, str]]:
    """(dsn, description). Embedded Postgres in ``tmp`` unless $IMAGEN_BENCH_DATABASE_URL."""
    # The worker's config would otherwise prefer this variable over the bench database.
    os.environ.pop(config.ENV_DATABASE_URL, None)
    url = os.environ.get(ENV_BENCH_DATABASE_URL)
    if url:
        name = f"imagen_bench_{uuid.uuid4().hex[:10]}"
        _admin(url, f"CREATE DATABASE {name}")
        try:
            yield _with_database(url, name), f"{ENV_BENCH_DATABASE_URL} (database {name})"
        finally:
            _admin(url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        return
    from imagen_actors import embedded

    server, dsn = embedded.start(tmp / "pgdata", cleanup="delete")
    try:
        yield dsn, "embedded Postgres (pgserver, unix socket)"
    finally:
        server.cleanup()


def bench_config(
    tmp: Path, dsn: str, *, latency_ms: int = 0, poll_interval_s: float = 3600.0, **worker: Any
) -> config.Config:
    doc = {
        "default_backend": "mock",
        "database": {"url": dsn},
        "output": {"directory": str(tmp / "out")},
        "storage": {"type": "local", "root": str(tmp / "objects")},
        "worker": {"name": "bench", "poll_interval_s": poll_interval_s, **worker},
        "backends": {"mock": {"type": "mock", "latency_ms": latency_ms}},
    }
    return config.parse(yaml.safe_dump(doc), source="bench")


@asynccontextmanager
async def client(dsn: str) -> AsyncIterator[Gateway]:
    """A separate pool for inserting jobs and reading results (not the worker's)."""
    async with Gateway.open(dsn, application_name="imagen-bench-client", pool_size=2) as gw:
        await migrate(gw)
        yield gw


@asynccontextmanager
async def running_worker(
    cfg: config.Config, *, wrap_store: Callable[[ObjectStore], ObjectStore] | None = None
) -> AsyncIterator[WorkerHandle]:
    """Run one worker in-process until the block ends; then stop intake and drain."""
    async with open_runtime(cfg) as rt, trio.open_nursery() as nursery:
        store = wrap_store(rt.store) if wrap_store else rt.store
        handle: WorkerHandle = await nursery.start(
            lambda task_status: run_worker(
                cfg, rt.gateway, store, rt.backends, rt.worker_id, task_status=task_status
            )
        )
        with trio.fail_after(30):
            await handle.listening.wait()
        try:
            yield handle
        finally:
            handle.stop_intake()
            with trio.move_on_after(10):
                await handle.pipeline_done.wait()
            handle.abort()


async def insert_job(gw: Gateway, size: int, prompt: str = "bench") -> uuid.UUID:
    rows = await gw.fetch_sql(
        "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
        "VALUES ($1, $2, 'mock', $3, $3) RETURNING id",
        OWNER,
        prompt,
        size,
    )
    job_id: uuid.UUID = rows[0]["id"]
    return job_id


async def insert_backlog(gw: Gateway, n: int, size: int) -> None:
    await gw.execute_sql(
        "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
        "SELECT $1, 'bench job ' || g, 'mock', $3, $3 FROM generate_series(1, $2) AS g",
        OWNER,
        n,
        size,
    )


async def wait_all_settled(gw: Gateway, n: int, *, timeout: float, label: str) -> None:
    """Until every job is terminal and its usage row recorded (the worker is idle again)."""
    start = time.monotonic()
    last_report = start
    with trio.fail_after(timeout):
        while True:
            row = (
                await gw.fetch_sql(
                    "SELECT count(*) FILTER"
                    " (WHERE status IN ('done','failed','cancelled')) AS term,"
                    " count(*) FILTER (WHERE status = 'done') AS done,"
                    " (SELECT count(*) FROM imagen.job_events WHERE type IN"
                    "   ('UsageRecorded','UsageFailed')) AS usage"
                    " FROM imagen.jobs"
                )
            )[0]
            if row["term"] >= n and row["usage"] >= row["done"]:
                return
            now = time.monotonic()
            if now - last_report >= 10:
                last_report = now
                print(
                    f"  [{label}] {row['term']}/{n} terminal after {now - start:.0f}s",
                    file=sys.stderr,
                )
            await trio.sleep(0.25)


async def pg_settings(gw: Gateway) -> dict[str, str]:
    rows = await gw.fetch_sql(
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('server_version', 'fsync', 'synchronous_commit', 'wal_sync_method', "
        "'shared_buffers', 'max_connections')"
    )
    return {r["name"]: r["setting"] for r in rows}


async def status_counts(gw: Gateway) -> dict[str, int]:
    rows = await gw.fetch_sql("SELECT status, count(*) AS n FROM imagen.jobs GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


# ---- figures --------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def loadavg() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"load average {loadavg()}"
    )


def print_header(
    title: str, n: int, db: str, settings: dict[str, str] | None = None, unit: str = "jobs"
) -> None:
    print(f"## {title}")
    print(f"machine: {machine()}")
    print(
        f"database: {db}"
        + (
            f"; server_version {settings.get('server_version')}, fsync {settings.get('fsync')}, "
            f"synchronous_commit {settings.get('synchronous_commit')}"
            if settings
            else ""
        )
    )
    print(f"{unit}: {n}")


def print_table(rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    vwidth = max(len(value) for _, value in rows)
    print(f"| {'figure'.ljust(width)} | {'value'.ljust(vwidth)} |")
    print(f"|{'-' * (width + 2)}|{'-' * (vwidth + 2)}|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value.ljust(vwidth)} |")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
