"""bench/bridge.py's floor, run as its own process so that nothing imports trio-asyncio
(which installs its own asyncio event-loop policy): asyncpg under ``asyncio.run`` alone.

    python bench/_plain_asyncio.py DSN N     # prints {"SELECT 1": [cpu_s, wall_s], ...}
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

WARM_UP = 50


async def small_transaction(conn: Any, i: int) -> None:
    """The same 4 statements as bench/bridge.py's: BEGIN, SELECT 1, INSERT, COMMIT."""
    async with conn.transaction():
        await conn.fetchval("SELECT 1")
        await conn.execute("INSERT INTO bench_bridge VALUES ($1)", i)


async def run(dsn: str, n: int) -> dict[str, tuple[float, float]]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)

    async def measure(fn: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
        for i in range(WARM_UP):
            await fn(i)
        walls = []
        cpu0 = time.process_time()
        for i in range(n):
            t0 = time.perf_counter()
            await fn(i)
            walls.append(time.perf_counter() - t0)
        return (time.process_time() - cpu0) / n, statistics.median(walls)

    async def ping(_i: int) -> None:
        await pool.fetchval("SELECT 1")

    async def tx(i: int) -> None:
        async with pool.acquire() as conn:
            await small_transaction(conn, i)

    try:
        return {"SELECT 1": await measure(ping), "transaction": await measure(tx)}
    finally:
        await pool.close()


if __name__ == "__main__":
    assert "trio_asyncio" not in sys.modules
    print(json.dumps(asyncio.run(run(sys.argv[1], int(sys.argv[2])))))
