"""Child process of bench/pgqueuer_side_by_side.py: PgQueuer draining N no-op jobs.

Plain ``asyncio.run`` (no uvloop), one asyncpg connection (``AsyncpgDriver``), one
``QueueManager`` with PgQueuer's defaults (batch_size 10), ``mode=drain``: it exits once the
queue is empty. The jobs are enqueued (one bulk ``enqueue``) before the clock starts; CPU is
this process's ``time.process_time()`` across ``run`` only. Prints one JSON object.

    python bench/_pgqueuer_drain.py DSN N
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
from pgqueuer.types import QueueExecutionMode

ENTRYPOINT = "bench_noop"


async def drain(dsn: str, n: int) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        driver = AsyncpgDriver(conn)
        queries = Queries(driver)
        if await conn.fetchval("SELECT to_regclass('pgqueuer') IS NULL"):
            await queries.install()
        await queries.clear_queue()
        await queries.clear_queue_log()
        await queries.enqueue([ENTRYPOINT] * n, [None] * n, [0] * n)
        qm = QueueManager(queries)

        @qm.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            return None

        cpu0, wall0 = time.process_time(), time.perf_counter()
        await qm.run(mode=QueueExecutionMode.drain)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        done = await conn.fetchval(
            "SELECT count(*) FROM pgqueuer_log WHERE entrypoint = $1 AND status = 'successful'",
            ENTRYPOINT,
        )
        left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
    finally:
        await conn.close()
    return {"done": done, "left": left, "wall_s": wall, "cpu_s": cpu}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(drain(sys.argv[1], int(sys.argv[2])))))
