"""The Claimer and the HealthBoard under MockClock (no database): jobs of an unhealthy
backend are not claimed, nothing is claimed while the store is down, the other backends go
on, and a change of health wakes the Claimer at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import trio
import trio.testing

from imagen_actors.config.slots import GPU, Pool
from imagen_actors.core import events as ev
from imagen_actors.core import fold
from imagen_actors.core.records import Transition
from imagen_actors.worker.actors.claimer import claimer
from imagen_actors.worker.actors.messages import ClaimedWork, Wake
from imagen_actors.worker.actors.slots import SlotBoard
from imagen_actors.worker.health import STORE, DependencyFault, HealthBoard, probing

T0 = datetime(2026, 12, 1, 12, 3, tzinfo=UTC)


class BackendQueue:
    """Pending jobs per backend; claim() takes the oldest of the backends it is asked for
    and records what it was asked."""

    def __init__(self, jobs: dict[str, int]) -> None:
        self.pending = [(b, uuid.uuid4()) for b, n in jobs.items() for _ in range(n)]
        self.asked: list[list[str]] = []

    async def claim(self, decide: Any, *, backends: Any = None, **_: Any) -> Transition | None:
        self.asked.append(list(backends))
        for i, (backend, job) in enumerate(self.pending):
            if backend in backends:
                del self.pending[i]
                submitted = ev.JobSubmitted(
                    job_id=job, occurred_at=T0, actor="database", owner_user_id=job,
                    prompt="p", backend=backend, width=64, height=64,
                )  # fmt: skip
                new = tuple(decide(fold.fold(None, submitted), T0))
                return Transition(fold.replay([submitted, *new]), new, (submitted,))
        return None

    async def next_run_after(self) -> float | None:
        return None

    async def transition(self, job_id: uuid.UUID, decide: Any) -> Transition:
        raise AssertionError("no hand-over fails in these tests")


async def run_claimer(
    queue: BackendQueue, board: HealthBoard, wanted: int, budget_s: float
) -> tuple[list[ClaimedWork], float]:
    """Be the one GPU slot until ``wanted`` jobs are claimed (or ``budget_s`` passes)."""
    slots = SlotBoard([Pool(GPU, 1, ("flux", "mock"))])
    _wake_send, wake_recv = trio.open_memory_channel[Wake](1)
    got: list[ClaimedWork] = []
    async with trio.open_nursery() as n:
        n.start_soon(
            lambda: claimer(
                queue, worker_id="w", lease_s=60, backends=["flux", "mock"],
                backend_absent_after_s=600, slots=slots, wakes=wake_recv, health=board,
            )
        )  # fmt: skip
        with trio.move_on_after(budget_s):
            while len(got) < wanted:
                got.append(await slots.next_work(GPU))
        n.cancel_scope.cancel()
    return got, trio.current_time()


async def test_an_unhealthy_backend_is_not_claimed_and_others_go_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    board = HealthBoard(["flux", "mock", STORE])
    board.mark_unhealthy("flux", "connection refused", fault="dependency")
    queue = BackendQueue({"flux": 2, "mock": 2})
    got, _ = await run_claimer(queue, board, wanted=4, budget_s=3600)
    assert [w.submitted.backend for w in got] == ["mock", "mock"]
    assert all(asked == ["mock"] for asked in queue.asked)
    assert [b for b, _ in queue.pending] == ["flux", "flux"]  # waiting, never claimed


async def test_nothing_is_claimed_while_the_store_is_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    board = HealthBoard(["flux", "mock", STORE])
    board.mark_unhealthy(STORE, "HTTP 502", fault="dependency")
    queue = BackendQueue({"mock": 1})
    got, _ = await run_claimer(queue, board, wanted=1, budget_s=3600)
    assert got == [] and queue.asked == []


async def test_a_probe_that_passes_wakes_the_claimer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """ComfyUI down for 60 s: probes back off; the first that passes marks it healthy and
    the waiting job is claimed at once, about 60 s in."""
    board = HealthBoard(["flux", "mock", STORE])
    board.mark_unhealthy("flux", "connection refused", fault="dependency")
    queue = BackendQueue({"flux": 1})
    up_at = trio.current_time() + 60

    async def probe() -> None:
        if trio.current_time() < up_at:
            raise DependencyFault("connection refused", fault="dependency")

    async with trio.open_nursery() as n:
        n.start_soon(probing, board, "flux", probe)
        got, when = await run_claimer(queue, board, wanted=1, budget_s=3600)
        n.cancel_scope.cancel()
    assert [w.submitted.backend for w in got] == ["flux"]
    assert 60 <= when <= 60 + 30  # the next probe after the outage (capped at 30 s)
