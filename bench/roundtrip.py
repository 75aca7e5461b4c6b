"""The floor under the per-job figures: what one database round trip, one committed write
and one fsync'd file cost on this machine, through the same Gateway the worker uses.

  gateway.ping          one pool query through the trio-asyncio bridge (SELECT 1, then
                        asyncpg's reset query on release: 2 round trips)
  empty transaction     BEGIN + SELECT + COMMIT + reset, nothing written (4 round trips)
  write transaction     BEGIN + INSERT + COMMIT + reset: adds a WAL flush at COMMIT
  fsync'd 1 KiB file    write_atomic (temp file, fsync, rename) in a worker thread, as the
                        Uploader does three times per job (PNG, JSON sidecar, local store)

    .venv/bin/python bench/roundtrip.py [--n 500]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

from imagen_actors.storage.local import write_atomic


async def timed(n: int, fn) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await fn(i)
        out.append(time.perf_counter() - t0)
    return out


async def main(n: int) -> None:
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
    c.print_header(
        "round-trip floor (Gateway, trio-asyncio bridge)", n, db, settings, unit="iterations each"
    )
    rows = []
    for name, values in figures.items():
        rows.append((f"{name} p50", c.ms(c.percentile(values, 50))))
        rows.append((f"{name} p99", c.ms(c.percentile(values, 99))))
    c.print_table(rows)


if __name__ == "__main__":
    args = c.parser(__doc__.splitlines()[0], default_n=500).parse_args()
    trio.run(main, args.n)
