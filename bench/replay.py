"""Replay speed: ``replay --verify --all`` over N completed jobs, and the fold alone.

A private database (embedded pgserver or $IMAGEN_BENCH_DATABASE_URL) is filled by running
N jobs through a real worker in-process (mock backend at 0 ms, 64x64; not timed). Then,
with Python's perf_counter (the work is client-side, so there is no database timestamp to
use):

  verify_all   ``imagen_actors.cli.commands.replay.verify_all`` on a Gateway opened as the
               CLI opens it (``database.open_database``): the code ``replay --verify --all``
               runs, minus interpreter start-up. Best of --repeats runs; jobs/s and events/s.
  CLI          ``python -m imagen_actors replay --all --config FILE`` as a subprocess, wall
               time, once; and ``python -m imagen_actors --version`` (the same imports and
               parser, no work) for the start-up share.
  fold alone   every job's decoded event stream through ``imagen_actors.core.fold.replay``,
               repeated for at least a second; events/s. Reading and checking the streams
               (``replay_stream.read`` and ``check``: one msgspec decode per job, the hash
               chain, each event decoded) is timed separately, as a supporting figure.

Rows for docs/performance.md: verify_all's jobs/s and events/s, the CLI's jobs/s, and the
fold's events/s.

    .venv/bin/python bench/replay.py [--n 2000] [--repeats 3]
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

from imagen_actors.cli import replay_stream
from imagen_actors.cli.replay_verify import verify_all
from imagen_actors.config import settings as config
from imagen_actors.core import events as ev
from imagen_actors.core import fold as fl
from imagen_actors.db import database
from imagen_actors.db.gateway import Gateway

SCRIPT = Path(__file__).name
PAGE = 500
FOLD_MIN_S = 1.0


async def populate(gw: Gateway, cfg: config.Config, n: int, size: int) -> None:
    await c.insert_backlog(gw, n, size)
    async with c.running_worker(cfg):
        await c.wait_all_settled(gw, n, timeout=n / 5 + 120, label="replay: filling")


async def time_verify_all(cfg: config.Config, repeats: int) -> tuple[list[float], int, int]:
    """Seconds per run of verify_all, and (jobs checked, mismatched) of the last run."""
    times = []
    checked = mismatched = 0
    async with database.open_database(cfg, application_name="imagen-actors replay") as gw:
        for _ in range(repeats):
            t0 = time.perf_counter()
            summary = await verify_all(gw)
            times.append(time.perf_counter() - t0)
            checked, mismatched = summary.checked, summary.mismatched
    return times, checked, mismatched


async def page_rows(gw: Gateway) -> list[dict[str, Any]]:
    """Every job's ``replay_page`` row (its stream as one JSON text), a page at a time."""
    out: list[dict[str, Any]] = []
    after = uuid.UUID(int=0)
    while rows := await gw.fetch("replay_page", after, PAGE):
        after = rows[-1]["id"]
        out += rows
    return out


def decode(rows: list[dict[str, Any]]) -> list[list[ev.Event]]:
    """Each row's stream read and checked as ``replay --verify`` does, decoded."""
    return [replay_stream.check(r["id"], replay_stream.read(r["stream"]))[0] for r in rows]


def time_fold(streams: list[list[ev.Event]]) -> tuple[float, int]:
    """(seconds, events) folding every stream, repeated for at least FOLD_MIN_S."""
    per_pass = sum(len(s) for s in streams)
    passes = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < FOLD_MIN_S or passes == 0:
        for stream in streams:
            fl.replay(stream)
        passes += 1
    return elapsed, per_pass * passes


def time_cli(*args: str) -> tuple[float, int, str]:
    """(wall seconds, exit status, last stdout line) of ``python -m imagen_actors ARGS``."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "imagen_actors", *args], capture_output=True, text=True
    )
    lines = done.stdout.strip().splitlines() or done.stderr.strip().splitlines() or [""]
    return time.perf_counter() - t0, done.returncode, lines[-1]


async def main(n: int, size: int, repeats: int) -> None:
    run = c.Run()
    with c.temp_dir("imagen-bench-replay-") as tmp, c.private_database(tmp) as (dsn, db):
        async with c.client(dsn) as gw:
            settings = await c.pg_settings(gw)
            cfg = c.bench_config(tmp, dsn, latency_ms=0)
            await populate(gw, cfg, n, size)
            counts = await c.status_counts(gw)
            times, checked, mismatched = await time_verify_all(cfg, repeats)
            rows = await page_rows(gw)
        t0 = time.perf_counter()
        streams = decode(rows)
        decode_s = time.perf_counter() - t0
        fold_s, folded = time_fold(streams)
        path = c.write_config(tmp, dsn, name="replay")
        cli_s, cli_rc, cli_last = await trio.to_thread.run_sync(
            time_cli, "replay", "--all", "--config", str(path)
        )
        start_s, _, _ = await trio.to_thread.run_sync(time_cli, "--version")
    events = sum(len(s) for s in streams)
    best = min(times)
    run.header("replay speed (replay --verify --all, fold)", n, db, settings)
    print(f"jobs by status: {counts}; {events:,} events ({events / checked:.1f} per job)")
    print(
        f"verify_all: checked {checked:,}, mismatched {mismatched}; CLI exit {cli_rc}: {cli_last}"
    )
    c.print_rows(
        [
            c.measured(
                f"replay --verify --all, {checked:,} done jobs (the CLI's verify_all, in-process)",
                checked / best,
                "jobs/s",
                SCRIPT,
                digits=0,
                note=f"{events / best:,.0f} events/s",
            ),
            c.measured(
                "replay --verify --all as a CLI subprocess (wall, with start-up)",
                checked / cli_s,
                "jobs/s",
                SCRIPT,
                digits=0,
                note=f"{cli_s:.2f} s for {checked:,} jobs",
            ),
            c.measured(
                "fold alone (`imagen_actors.core.fold.replay` over decoded streams)",
                folded / fold_s,
                "events/s",
                SCRIPT,
                digits=0,
            ),
        ]
    )
    print("supporting:")
    c.print_table(
        [
            (f"verify_all, each of {repeats} runs", ", ".join(f"{t:.2f} s" for t in times)),
            (
                "read and check streams (replay_stream: chain, decode)",
                f"{events / decode_s:,.0f} events/s",
            ),
            ("CLI start-up alone (--version: imports, parser)", f"{start_s:.2f} s"),
        ]
    )


if __name__ == "__main__":
    p = c.parser(__doc__.splitlines()[0], default_n=2000)
    p.add_argument("--repeats", type=int, default=3, help="verify_all runs (best is reported)")
    args = p.parse_args()
    trio.run(main, args.n, args.size, args.repeats)
