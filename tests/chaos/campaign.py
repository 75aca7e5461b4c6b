"""Shared machinery of the fault campaign: the seed, the bounded/full switch, real worker
processes that can be killed with SIGKILL, and waiting for the queue to settle.

``IMAGEN_CHAOS_SEED`` fixes the seed (else one is drawn and printed); every random choice of
every scenario comes from ``rng(name)``, a ``random.Random`` seeded by that seed and the
scenario's name. Real processes and real time stay real, so a seed reproduces the campaign's
choices (which faults, when to kill, which name to restart under), not the exact
interleaving.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Final

import attrs
import trio

from imagen_actors.db.gateway import Gateway
from tests.support.worker import worker_process

SEED: Final = int(os.environ.get("IMAGEN_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
FULL: Final = os.environ.get("IMAGEN_CHAOS_FULL", "") not in ("", "0")
STARTUP_BUDGET_S: Final = 30.0
STOP_BUDGET_S: Final = 30.0


def rng(scenario: str) -> random.Random:
    return random.Random(f"{SEED}:{scenario}")


def context(scenario: str) -> str:
    """The line every failure message starts with: how to rerun exactly these choices."""
    mode = "IMAGEN_CHAOS_FULL=1 " if FULL else ""
    return f"[chaos {scenario}] seed {SEED}: rerun with {mode}IMAGEN_CHAOS_SEED={SEED}"


async def insert_jobs(
    gw: Gateway,
    n: int,
    *,
    r: random.Random,
    backend: str = "mock",
    max_attempts: int = 3,
    share_keys: int | None = None,
) -> None:
    """n jobs in one statement, like a burst from the UI; ids (and so the mock backend's
    fail_rate rolls and default seeds) come from the scenario's RNG. With ``share_keys=k``
    the jobs use k prompts and one explicit seed, so groups of jobs want the same storage
    key (same prompt, seed and day) and all but one per key must take their variant."""
    ids = [uuid.UUID(int=r.getrandbits(128), version=4) for _ in range(n)]
    await gw.execute_sql(
        "INSERT INTO imagen.jobs (id, owner_user_id, prompt, backend, width, height, "
        "max_attempts, seed) "
        "SELECT id, gen_random_uuid(), 'chaos job ' || CASE WHEN $4::int IS NULL THEN ord "
        "ELSE ord % $4::int END, $2, 64, 64, $3, CASE WHEN $4::int IS NULL THEN NULL ELSE 7 END "
        "FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, ord)",
        ids,
        backend,
        max_attempts,
        share_keys,
    )


@attrs.define
class Worker:
    """One real ``imagen-actors worker`` process, its log file and when it started."""

    config: Path
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    log_offset: int
    started: float

    @classmethod
    def spawn(cls, config: Path, name: str) -> Worker:
        log = config.with_suffix(f".{name.replace(':', '_')}.log")
        offset = log.stat().st_size if log.exists() else 0
        return cls(config, name, worker_process(config, name=name), log, offset, time.monotonic())

    def listening(self) -> bool:
        if not self.log.exists():
            return False
        with self.log.open("rb") as fh:
            fh.seek(self.log_offset)
            return b" listening (backends" in fh.read()

    async def wait_listening(self, budget_s: float = STARTUP_BUDGET_S) -> None:
        with trio.fail_after(budget_s):
            while not self.listening():
                if self.proc.poll() is not None:
                    raise AssertionError(f"worker {self.name} exited {self.proc.returncode}")
                await trio.sleep(0.02)

    async def kill9(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        await trio.to_thread.run_sync(self.proc.wait)

    async def stop(self) -> int:
        """SIGTERM (drain) and the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return await trio.to_thread.run_sync(lambda: self.proc.wait(timeout=STOP_BUDGET_S))

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


UNSETTLED = """
j.status NOT IN ('done', 'failed')
   OR (j.status = 'failed'
       AND EXISTS (SELECT 1 FROM imagen.job_events e
                   WHERE e.job_id = j.id AND e.type = 'GenerationSucceeded')
       AND NOT EXISTS (SELECT 1 FROM imagen.job_events e
                       WHERE e.job_id = j.id AND e.type = 'ImageDiscarded'))
"""


async def wait_settled(gw: Gateway, budget_s: float, what: str) -> None:
    """Every job done or failed within the budget, and every failed job that got as far as
    an image cleaned up after (its leftover objects discarded by the Reaper); else fail
    listing the stuck ones."""
    count = f"SELECT count(*) AS n FROM imagen.jobs j WHERE {UNSETTLED}"
    with trio.move_on_after(budget_s):
        while (await gw.fetch_sql(count))[0]["n"]:
            await trio.sleep(0.1)
        return
    stuck = await gw.fetch_sql(
        "SELECT j.id, j.status, j.worker_id, j.attempts, j.lease_expires_at, j.run_after, "
        "(SELECT string_agg(type, ' ' ORDER BY seq) FROM imagen.job_events e "
        " WHERE e.job_id = j.id) AS events "
        f"FROM imagen.jobs j WHERE {UNSETTLED} ORDER BY created_at, id LIMIT 10"
    )
    lines = "\n  ".join(str(s) for s in stuck)
    raise AssertionError(f"{what}: jobs not settled within {budget_s:.0f}s:\n  {lines}")


async def count_terminal(gw: Gateway) -> int:
    rows = await gw.fetch_sql(
        "SELECT count(*) AS n FROM imagen.jobs WHERE status IN ('done', 'failed')"
    )
    return int(rows[0]["n"])
