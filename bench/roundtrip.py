"""The floor under the per-job figures: what one database round trip, one committed write
and one fsync'd file cost on this machine, through the same Gateway the worker uses.

  gateway.ping          one pool query through the trio-asyncio bridge (SELECT 1: 1 round
                        trip; the pool's reset hook sends nothing on release)
  empty transaction     BEGIN + SELECT + COMMIT, nothing written (3 round trips)
  write transaction     BEGIN + INSERT + COMMIT: adds a WAL flush at COMMIT
  fsync'd 1 KiB file    write_atomic (temp file, fsync, rename) in a worker thread, as the
                        Uploader does three times per job (PNG, JSON sidecar, local store)

Rows for docs/performance.md: the p50 of each (the floor under the figures above); the p99s
follow as supporting figures.

    .venv/bin/python bench/roundtrip.py [--n 500]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

from imagen_actors.storage.local import write_atomic

SCRIPT = Path(__file__).name
FLOOR = {
    "gateway.ping": "floor: one query through the Gateway (`gateway.ping`) p50",
    "empty transaction": "floor: empty transaction (BEGIN, SELECT, COMMIT) p50",
    "write transaction": "floor: committed one-row INSERT transaction p50",
    "fsync'd 1 KiB file": "floor: fsync'd 1 KiB file (`write_atomic` in a thread) p50",
}


async def timed(n: int, fn: Callable[[int], Awaitable[None]]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await fn(i)
        out.append(time.perf_counter() - t0)
    return out


async def main(n: int) -> None:
    run = c.Run()
    with c.temp_dir("imagen-bench-rt-") as tmp, c.private_database(tmp) as (dsn, db):
        async with c.client(dsn) as gw:
            settings = await c.pg_settings(gw)
            await gw.execute_sql("CREATE TABLE bench_rt (id int)")
            pool = gw._pool

            async def ping(_i: int) -> None:
                await gw.ping()

            async def empty_tx(_i: int) -> None:
                async def body() -> None:
                    async with pool.acquire() as conn, conn.transaction():
                        await conn.fetchval("SELECT 1")

                await gw._run(body)

            async def write_tx(i: int) -> None:
                async def body() -> None:
                    async with pool.acquire() as conn, conn.transaction():
                        await conn.execute("INSERT INTO bench_rt VALUES ($1)", i)

                await gw._run(body)

            async def fsync_file(i: int) -> None:
                await trio.to_thread.run_sync(write_atomic, tmp / "files" / f"{i}.bin", b"x" * 1024)

            await timed(20, ping)  # warm-up
            figures = {
                "gateway.ping": await timed(n, ping),
                "empty transaction": await timed(n, empty_tx),
                "write transaction": await timed(n, write_tx),
                "fsync'd 1 KiB file": await timed(n, fsync_file),
            }
    run.header(
        "round-trip floor (Gateway, trio-asyncio bridge)", n, db, settings, unit="iterations each"
    )
    c.print_rows(
        [
            c.measured(FLOOR[name], c.percentile(values, 50) * 1000, "ms", SCRIPT)
            for name, values in figures.items()
        ]
    )
    print("supporting:")
    c.print_table([(f"{name} p99", c.ms(c.percentile(v, 99))) for name, v in figures.items()])


if __name__ == "__main__":
    args = c.parser(__doc__.splitlines()[0], default_n=500).parse_args()
    trio.run(main, args.n)
