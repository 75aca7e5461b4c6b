from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import trio
import trio.testing

from imagen_actors.config.slots import GPU, Pool
from imagen_actors.core import events as ev
from imagen_actors.core import fold
from imagen_actors.core.errors import DatabaseUnavailableError
from imagen_actors.core.records import Transition
from imagen_actors.worker.actors.claimer import claimer
from imagen_actors.worker.actors.messages import ClaimedWork, Wake
from imagen_actors.worker.actors.slots import SlotBoard
from imagen_actors.worker.actors.supervisor import EscalationError, RestartPolicy, supervise

T0 = datetime(2026, 11, 23, tzinfo=UTC)


class FakeQueue:
    """claim() fails ``failures`` times, then hands out the queued jobs in order."""

    def __init__(self, jobs: int, failures: int) -> None:
        self.failures = failures
        self.pending = [uuid.uuid4() for _ in range(jobs)]
        self.claims = 0

    async def claim(self, decide: Any, **_filters: Any) -> Transition | None:
        if self.failures:
            self.failures -= 1
            raise DatabaseUnavailableError("connection refused")
        if not self.pending:
            return None
        job = self.pending.pop(0)
        submitted = ev.JobSubmitted(
            job_id=job,
            occurred_at=T0,
            actor="database",
            owner_user_id=job,
            prompt="p",
            backend="mock",
            width=64,
            height=64,
        )
        state = fold.fold(None, submitted)
        new: Sequence[ev.Event] = tuple(decide(state, T0))
        self.claims += 1
        return Transition(fold.replay([submitted, *new]), tuple(new), (submitted,))

    async def next_run_after(self) -> float | None:
        return None

    async def transition(self, job_id: uuid.UUID, decide: Any) -> Transition:
        raise AssertionError("no hand-over fails in these tests")


def gpu_only() -> SlotBoard:
    return SlotBoard([Pool(GPU, 1, ("mock",))])


async def test_claim_failure_keeps_the_free_slot(autojump_clock: trio.testing.MockClock) -> None:
    """A database error while claiming is retried; the Executor's slot is not forgotten."""
    queue = FakeQueue(jobs=2, failures=3)
    slots = gpu_only()
    _wake_send, wake_recv = trio.open_memory_channel[Wake](1)
    got: list[ClaimedWork] = []
    async with trio.open_nursery() as n:
        n.start_soon(
            lambda: claimer(
                queue,
                worker_id="w",
                lease_s=60,
                backends=["mock"],
                backend_absent_after_s=600,
                slots=slots,
                wakes=wake_recv,
            )
        )
        for _ in range(2):
            got.append(await slots.next_work(GPU))  # as the Executor does
        n.cancel_scope.cancel()
    assert [w.claimed.attempt for w in got] == [1, 1]
    assert queue.claims == 2 and queue.failures == 0
    assert trio.current_time() > 0  # backed off (full jitter) between the retries


class BuggyQueue(FakeQueue):
    """claim() raises a bug (not a database error) ``bugs`` times, then works."""

    def __init__(self, jobs: int, bugs: int) -> None:
        super().__init__(jobs, failures=0)
        self.bugs = bugs

    async def claim(self, decide: Any, **filters: Any) -> Transition | None:
        if self.bugs:
            self.bugs -= 1
            raise KeyError("a bug, not an outage")
        return await super().claim(decide, **filters)


async def test_a_bug_goes_to_the_supervisor_and_the_slot_survives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A non-database error crashes the Claimer into its supervisor (it is not retried in
    place); the restarted Claimer still sees the Executor's free slot and claims the job."""
    queue = BuggyQueue(jobs=1, bugs=2)
    slots = gpu_only()
    _wake_send, wake_recv = trio.open_memory_channel[Wake](1)
    crashes: list[BaseException] = []

    async def child() -> None:
        await claimer(
            queue,
            worker_id="w",
            lease_s=60,
            backends=["mock"],
            backend_absent_after_s=600,
            slots=slots,
            wakes=wake_recv,
        )

    async with trio.open_nursery() as n:
        n.start_soon(
            lambda: supervise(
                "claimer",
                child,
                policy=RestartPolicy(max_restarts=5),
                on_restart=lambda _name, exc: crashes.append(exc),
            )
        )
        with trio.fail_after(60):
            got = await slots.next_work(GPU)  # exactly one free slot
        n.cancel_scope.cancel()
    assert got.claimed.attempt == 1
    assert [type(e) for e in crashes] == [KeyError, KeyError]


async def test_a_bug_past_the_restart_intensity_escalates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A Claimer that crashes on every claim is not retried forever: the supervisor escalates."""

    queue = BuggyQueue(jobs=1, bugs=1000)
    slots = gpu_only()
    _wake_send, wake_recv = trio.open_memory_channel[Wake](1)

    async def child() -> None:
        await claimer(
            queue,
            worker_id="w",
            lease_s=60,
            backends=["mock"],
            backend_absent_after_s=600,
            slots=slots,
            wakes=wake_recv,
        )

    async with trio.open_nursery() as n:
        n.start_soon(slots.next_work, GPU)  # one free slot
        with pytest.raises(EscalationError, match="claimer crashed"):
            await supervise("claimer", child, policy=RestartPolicy(max_restarts=3, period_s=60))
        n.cancel_scope.cancel()
    assert queue.bugs == 1000 - 4
