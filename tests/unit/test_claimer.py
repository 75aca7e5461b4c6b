from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import trio
import trio.testing

from imagen_actors.core import events as ev
from imagen_actors.core import fold
from imagen_actors.core.errors import DatabaseUnavailableError
from imagen_actors.core.records import Transition
from imagen_actors.worker.actors.claimer import claimer
from imagen_actors.worker.actors.messages import ClaimedWork, Wake

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

    async def fetchval(self, name: str, *args: Any) -> Any:
        assert name == "next_run_after"
        return None


async def test_claim_failure_keeps_the_ready_token(autojump_clock: trio.testing.MockClock) -> None:
    """A database error while claiming is retried; the Executor's slot is not forgotten."""
    queue = FakeQueue(jobs=2, failures=3)
    ready_send, ready_recv = trio.open_memory_channel[None](0)
    _wake_send, wake_recv = trio.open_memory_channel[Wake](1)
    work_send, work_recv = trio.open_memory_channel[ClaimedWork](0)
    got: list[ClaimedWork] = []
    async with trio.open_nursery() as n:
        n.start_soon(
            lambda: claimer(
                queue,
                worker_id="w",
                lease_s=60,  # type: ignore[arg-type]
                backends=["mock"],
                backend_absent_after_s=600,
                ready=ready_recv,
                wakes=wake_recv,
                work=work_send,
            )
        )
        for _ in range(2):
            await ready_send.send(None)  # one token per free slot, as the Executor does
            got.append(await work_recv.receive())
        n.cancel_scope.cancel()
    assert [w.claimed.attempt for w in got] == [1, 1]
    assert queue.claims == 2 and queue.failures == 0
    assert trio.current_time() > 0.1 + 0.2 + 0.4 - 1e-9  # backed off between retries
