"""The trio -> asyncpg bridge, side by side: CPU per call of the same two operations through

  Gateway        the worker's ``Gateway`` (db/bridge.py): asyncpg on a plain asyncio loop
                 in a dedicated thread; the Trio task starts one asyncio task there per
                 call and is rescheduled (``TrioToken.run_sync_soon``) when it ends;
  trio-asyncio   ``trio_asyncio.aio_as_trio`` on the loop that trio-asyncio runs inside
                 Trio: the Gateway's bridge until 2026-12 (docs/decisions.md);
  plain asyncio  asyncpg under ``asyncio.run`` in a child process that imports neither
                 Trio nor trio-asyncio (bench/_plain_asyncio.py): the floor.

The operations: ``SELECT 1`` (one round trip) and a 4-statement write transaction (BEGIN,
SELECT 1, INSERT one row, COMMIT). CPU = this process's user+sys time (every thread: the
loop thread's work counts) per call; wall p50 too. trio-asyncio is no longer a dependency
of the package: the bench extra installs it.

Rows for docs/performance.md: CPU per call for each bridge and operation.

    .venv/bin/python bench/bridge.py [--n 2000]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
from _plain_asyncio import small_transaction

from imagen_actors.db.gateway import Gateway

SCRIPT = Path(__file__).name
T = TypeVar("T")
WARM_UP = 50


def cpu_s() -> float:
    return time.process_time()


async def measure_trio(n: int, fn: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
    """(CPU s per call, wall p50 s) of n sequential calls."""
    for i in range(WARM_UP):
        await fn(i)
    walls = []
    cpu0 = cpu_s()
    for i in range(n):
        t0 = time.perf_counter()
        await fn(i)
        walls.append(time.perf_counter() - t0)
    return (cpu_s() - cpu0) / n, statistics.median(walls)


async def select_one(conn: Any) -> None:
    await conn.fetchval("SELECT 1")


async def via_gateway(dsn: str, n: int) -> dict[str, tuple[float, float]]:
    async with Gateway.open(dsn, application_name="bench-bridge", pool_size=2) as gw:
        pool = gw._pool

        async def ping(_i: int) -> None:
            await gw.ping()

        async def tx(i: int) -> None:
            async def body() -> None:
                async with pool.acquire() as conn:
                    await small_transaction(conn, i)

            await gw._run(body)

        return {"SELECT 1": await measure_trio(n, ping), "transaction": await measure_trio(n, tx)}


async def via_trio_asyncio(dsn: str, n: int) -> dict[str, tuple[float, float]]:
    import trio_asyncio  # the bench extra; it replaces asyncio's loop policy on import

    async with trio_asyncio.open_loop() as loop:

        def aio(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
            wrapped: Callable[..., Awaitable[T]] = trio_asyncio.aio_as_trio(fn, loop=loop)
            return wrapped

        pool = await aio(asyncpg.create_pool)(
            dsn, min_size=1, max_size=2, max_inactive_connection_lifetime=0
        )

        async def ping(_i: int) -> None:
            await aio(pool.fetchval)("SELECT 1")

        async def tx(i: int) -> None:
            async def body() -> None:
                async with pool.acquire() as conn:
                    await small_transaction(conn, i)

            await aio(body)()

        figures = {
            "SELECT 1": await measure_trio(n, ping),
            "transaction": await measure_trio(n, tx),
        }
        await aio(pool.close)()
        return figures


def via_plain_asyncio(dsn: str, n: int) -> dict[str, tuple[float, float]]:
    """In a child process (bench/_plain_asyncio.py): importing trio-asyncio, as this process
    has, replaces asyncio's event-loop policy."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_plain_asyncio.py")), dsn, str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, list[float]] = json.loads(done.stdout)
    return {op: (cpu, wall) for op, (cpu, wall) in figures.items()}


def main(n: int) -> None:
    run = c.Run()
    with c.temp_dir("imagen-bench-bridge-") as tmp, c.private_database(tmp) as (dsn, db):

        async def prepare() -> dict[str, str]:
            async with c.client(dsn) as gw:
                await gw.execute_sql("CREATE TABLE bench_bridge (id int)")
                return await c.pg_settings(gw)

        settings = trio.run(prepare)
        results = {
            "Gateway (asyncio loop in a thread)": trio.run(via_gateway, dsn, n),
            "trio-asyncio": trio.run(via_trio_asyncio, dsn, n),
            "plain asyncio": via_plain_asyncio(dsn, n),
        }
    run.header("the trio -> asyncpg bridge (CPU per call)", n, db, settings, unit="calls each")
    rows = []
    for bridge, figures in results.items():
        for op, (cpu, _wall) in figures.items():
            what = "`SELECT 1`" if op == "SELECT 1" else "4-statement write transaction"
            rows.append(
                c.measured(
                    f"bridge CPU per call: {what}, {bridge}", cpu * 1000, "ms", SCRIPT, digits=2
                )
            )
    c.print_rows(rows)
    print("supporting: wall p50 per call")
    c.print_table(
        [
            (f"{bridge}: {op}", c.ms(wall))
            for bridge, figures in results.items()
            for op, (_cpu, wall) in figures.items()
        ]
    )


if __name__ == "__main__":
    args = c.parser(__doc__.splitlines()[0], default_n=2000).parse_args()
    main(args.n)
