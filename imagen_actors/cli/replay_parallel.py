"""``replay --verify --all`` in several processes, for a big history.

One Python process checks about 8,000 jobs/s here, bound by its own CPU (about 120 us a
job: the checks, plus asyncpg reading the rows under the same GIL), while the server needs
about 30 us a job. So ``verify_all`` can start one process per CPU, each with its own
connection and an equal share of the id space (job ids are random UUIDs), checking its
share with ``replay_verify.verify_range`` as a single process would. After each page a
process sends back what the parent must see: every result when ``--json`` or ``--objects``
needs them (the parent checks objects and writes the results), else only the jobs that did
not verify and a count of those that did. Frames on the pipe are length-prefixed pickles:
parent and children run the same code, and a diff keeps its values' Python types for the
report.
"""

from __future__ import annotations

import itertools
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Final

import attrs
import trio

from imagen_actors.cli import replay_verify
from imagen_actors.cli.reports import replay as rr
from imagen_actors.core.errors import DatabaseError
from imagen_actors.db.gateway import Gateway

# Below this many jobs, starting the processes (about half a second each: imports) costs
# more than sharing the work saves.
FROM_JOBS: Final = 20_000
# The server runs alongside; more processes than this only queue for the same cores.
MAX_WORKERS: Final = 4
_LENGTH: Final = 8


@attrs.frozen
class Share:
    """One process's part of the run: jobs with ids in (``after``, ``last``]."""

    dsn: str
    application_name: str
    after: uuid.UUID
    last: uuid.UUID
    page_size: int
    send_all: bool


@attrs.frozen
class PageDone:
    """One checked page, as a process sends it: the results the parent must see, and how
    many more jobs verified."""

    results: list[rr.VerifyResult]
    unsent_ok: int


async def workers_for(gw: Gateway) -> int:
    """One process per CPU (at most MAX_WORKERS) for a history of FROM_JOBS jobs or more."""
    cpus = os.cpu_count() or 1
    if cpus < 2:
        return 1
    jobs = sum((await gw.status_counts()).values())
    return min(cpus, MAX_WORKERS) if jobs >= FROM_JOBS else 1


def shares(workers: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """The id space cut into ``workers`` (after, last] ranges, in order."""
    step = 2**128 // workers
    cuts = [0, *(step * i for i in range(1, workers)), 2**128 - 1]
    return [(uuid.UUID(int=a), uuid.UUID(int=b)) for a, b in itertools.pairwise(cuts)]


async def verify_shares(
    gw: Gateway,
    workers: int,
    page_size: int,
    *,
    send_all: bool,
    take: Callable[[list[rr.VerifyResult], int], Awaitable[None]],
) -> None:
    """Check every job in ``workers`` processes, handing ``take`` each page they send."""
    async with trio.open_nursery() as nursery:
        for after, last in shares(workers):
            share = Share(gw.dsn, gw.application_name, after, last, page_size, send_all)
            nursery.start_soon(_run_share, share, take)


async def _run_share(
    share: Share, take: Callable[[list[rr.VerifyResult], int], Awaitable[None]]
) -> None:
    command = [sys.executable, "-m", __name__]
    # The request (with the DSN, which may hold a password) goes on stdin, not argv.
    run = partial(
        trio.run_process, command, stdin=pickle.dumps(share), stdout=subprocess.PIPE, check=False
    )
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(run)
        assert process.stdout is not None
        buffer = b""
        async for chunk in process.stdout:
            buffer += chunk
            while len(buffer) >= _LENGTH:
                size = int.from_bytes(buffer[:_LENGTH], "big")
                if len(buffer) < _LENGTH + size:
                    break
                page: PageDone = pickle.loads(buffer[_LENGTH : _LENGTH + size])
                buffer = buffer[_LENGTH + size :]
                await take(page.results, page.unsent_ok)
        status = await process.wait()
    if status != 0:
        raise DatabaseError(
            f"a replay --verify worker process (jobs after {share.after}) exited with status "
            f"{status}; its error is printed above"
        )


async def _check_share(share: Share) -> None:
    out = sys.stdout.buffer

    async def send(results: list[rr.VerifyResult]) -> None:
        sent = results if share.send_all else [r for r in results if not r.ok]
        frame = pickle.dumps(PageDone(sent, len(results) - len(sent)))
        out.write(len(frame).to_bytes(_LENGTH, "big") + frame)
        out.flush()

    async with Gateway.open(share.dsn, application_name=share.application_name) as gw:
        await replay_verify.verify_range(gw, share.after, share.last, share.page_size, send)


def main() -> None:
    share = pickle.loads(sys.stdin.buffer.read())
    trio.run(_check_share, share)


if __name__ == "__main__":
    # Run as the package module, not as __main__: the frames pickle its classes by name.
    from imagen_actors.cli import replay_parallel

    replay_parallel.main()
