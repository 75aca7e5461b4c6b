"""Shared plumbing for the benchmark scripts in bench/.

Each script gets a private database (an embedded pgserver cluster in a temp dir, or a fresh
database created on $IMAGEN_BENCH_DATABASE_URL and dropped afterwards), migrates it, runs
workers (in-process here, or as real ``python -m imagen_actors worker`` subprocesses through
_processes.py; mock backend, local storage in the temp dir) and reads every figure back
from the database's own timestamps (imagen.jobs / imagen.job_events), so the numbers use
one clock and do not depend on Python-side timers.

Every script prints the rows it contributes to the table in docs/performance.md in exactly
that table's format (``print_rows``), right after the line ``ROWS_MARKER``; bench/all.py
collects them. Supporting figures follow in a second, two-column table (``print_table``).

These are measurements, not tests: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio
import yaml

from imagen_actors.config import settings as config
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.migrations import migrate
from imagen_actors.storage.base import ObjectStore
from imagen_actors.worker.daemon import run_worker
from imagen_actors.worker.handle import WorkerHandle
from imagen_actors.worker.runtime import open_runtime

ENV_BENCH_DATABASE_URL = "IMAGEN_BENCH_DATABASE_URL"
OWNER = uuid.UUID("00000000-0000-4000-8000-00000000be4c")
REPO = Path(__file__).resolve().parent.parent


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
    from imagen_actors.db import embedded

    server, dsn = embedded.start(tmp / "pgdata", cleanup="delete")
    try:
        yield dsn, "embedded Postgres (pgserver, unix socket)"
    finally:
        server.cleanup()


def server_cpu_s(tmp: Path) -> float | None:
    """CPU (user + system) of the embedded cluster in ``tmp`` so far: its postmaster, the
    children it has reaped (cutime/cstime) and the live ones (backends, WAL writer...).
    None for a database elsewhere ($IMAGEN_BENCH_DATABASE_URL)."""
    from imagen_actors.db import embedded

    postmaster = embedded.running(tmp / "pgdata")
    if postmaster is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")

    def fields(pid: int) -> list[str]:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()

    own = fields(postmaster)
    total = sum(int(x) for x in own[11:15])  # utime, stime, cutime, cstime
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    for child in children:
        try:
            total += sum(int(x) for x in fields(int(child))[11:13])
        except (OSError, ValueError):
            continue  # ended meanwhile: its time is in the postmaster's cutime from now on
    return total / tick


def config_doc(
    tmp: Path,
    dsn: str,
    *,
    name: str = "bench",
    latency_ms: int = 0,
    poll_interval_s: float = 3600.0,
    **worker: Any,
) -> dict[str, Any]:
    """A worker config: mock backend, outputs and local object store inside ``tmp``."""
    return {
        "default_backend": "mock",
        "database": {"url": dsn},
        "output": {"directory": str(tmp / "out" / name)},
        "storage": {"type": "local", "root": str(tmp / "objects")},
        "worker": {"name": name, "poll_interval_s": poll_interval_s, **worker},
        "backends": {"mock": {"type": "mock", "latency_ms": latency_ms}},
    }


def bench_config(tmp: Path, dsn: str, **kwargs: Any) -> config.Config:
    return config.parse(yaml.safe_dump(config_doc(tmp, dsn, **kwargs)), source="bench")


def write_config(tmp: Path, dsn: str, **kwargs: Any) -> Path:
    """The same config as a file, for a worker subprocess (``--config``)."""
    doc = config_doc(tmp, dsn, **kwargs)
    path = tmp / f"imagen-{doc['worker']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


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


async def insert_backlog(gw: Gateway, n: int, size: int, *, first: int = 1) -> None:
    """N jobs in one INSERT ... SELECT, prompts 'bench job <first>' onwards (unique keys)."""
    await gw.execute_sql(
        "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
        "SELECT $1, 'bench job ' || g, 'mock', $3, $3"
        " FROM generate_series($4::int, $4::int + $2::int - 1) AS g",
        OWNER,
        n,
        size,
        first,
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


async def done_rate(gw: Gateway) -> tuple[float, float]:
    """(jobs/s, span in s): done jobs / (last finished_at - first JobClaimed.occurred_at)."""
    row = (
        await gw.fetch_sql(
            "SELECT count(*) FILTER (WHERE status = 'done') AS done,"
            " (SELECT min(occurred_at) FROM imagen.job_events WHERE type = 'JobClaimed')"
            "   AS first_claim,"
            " max(finished_at) AS last_finished FROM imagen.jobs"
        )
    )[0]
    span: float = (row["last_finished"] - row["first_claim"]).total_seconds()
    return row["done"] / span, span


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


def commit() -> str:
    """Short HEAD, marked when the package or bench/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "imagen_actors", "schema", "bench"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + (" (+ uncommitted changes)" if dirty else "")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


@dataclass
class Run:
    """When a script started (UTC), at which commit and under what load; ``header`` prints."""

    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    t0: float = field(default_factory=time.monotonic)
    load_at_start: str = field(default_factory=loadavg)

    def header(
        self,
        title: str,
        n: int,
        db: str,
        settings: dict[str, str] | None = None,
        unit: str = "jobs",
    ) -> None:
        print(f"## {title}")
        print(f"date: {self.started:%Y-%m-%d %H:%M} UTC; commit {commit()}")
        print(f"machine: {machine()}")
        print(f"load average (1/5/15 min): {self.load_at_start} at start, {loadavg()} at end")
        print(f"wall time: {time.monotonic() - self.t0:.0f} s")
        print(
            f"database: {db}"
            + (
                f"; server_version {settings.get('server_version')}, "
                f"fsync {settings.get('fsync')}, "
                f"synchronous_commit {settings.get('synchronous_commit')}"
                if settings
                else ""
            )
        )
        print(f"{unit}: {n:,}")


def print_table(rows: Sequence[tuple[str, str]]) -> None:
    """A supporting two-column table (figure, value)."""
    width = max(len(name) for name, _ in rows)
    vwidth = max(len(value) for _, value in rows)
    print(f"| {'figure'.ljust(width)} | {'value'.ljust(vwidth)} |")
    print(f"|{'-' * (width + 2)}|{'-' * (vwidth + 2)}|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value.ljust(vwidth)} |")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# ---- the table in docs/performance.md -------------------------------------------------

ROWS_MARKER = "rows for docs/performance.md:"
COLUMNS = ("figure", "value", "target", "met?", "how measured")
NONE = "—"


@dataclass(frozen=True)
class Target:
    bound: float
    at_least: bool
    text: str

    def met(self, shown: float) -> str:
        ok = shown >= self.bound if self.at_least else shown <= self.bound
        return "yes" if ok else "no"


def at_most(bound: float, unit: str) -> Target:
    return Target(bound, False, f"≤ {bound:,g} {unit}")


def at_least(bound: float, unit: str) -> Target:
    return Target(bound, True, f"≥ {bound:,g} {unit}")


@dataclass(frozen=True)
class Row:
    """One row of the report table; ``script`` is the bench file (``Path(__file__).name``)."""

    figure: str
    value: str
    script: str
    target: str = NONE
    met: str = NONE

    def markdown(self) -> str:
        cells = (self.figure, self.value, self.target, self.met, how_measured(self.script))
        return "| " + " | ".join(cells) + " |"


def how_measured(script: str) -> str:
    """A link to the script's section under "How each figure is measured" (GitHub anchor)."""
    title = f"bench/{script}"
    anchor = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
    return f"[{title}](#{anchor})"


def measured(
    figure: str,
    value: float,
    unit: str,
    script: str,
    *,
    digits: int = 1,
    target: Target | None = None,
    note: str = "",
) -> Row:
    """A numeric row; "met?" compares the value as shown (rounded) with the target."""
    shown = round(value, digits)
    text = f"{shown:,.{digits}f} {unit}".rstrip() + (f" ({note})" if note else "")
    if target is None:
        return Row(figure, text, script)
    return Row(figure, text, script, target.text, target.met(shown))


def table_head() -> list[str]:
    return ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]


def print_rows(rows: Sequence[Row]) -> None:
    """The script's rows of the docs/performance.md table, with the table's header."""
    print(ROWS_MARKER)
    for line in table_head():
        print(line)
    for row in rows:
        print(row.markdown())
    print()


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    # A throwaway dir under /tmp: run as root, pgserver runs initdb as the user `pgserver`
    # and first adds o+rx to every parent of the cluster directory so that user can reach it.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
