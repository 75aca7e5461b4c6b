"""The Claimer and the SlotBoard under MockClock (no database): a job is claimed only for a
backend whose device has a free slot, a remote pool's jobs are claimed while the GPU is
busy, and a slot that frees wakes the Claimer without a Wake."""

from __future__ import annotations

import trio
import trio.testing

from imagen_actors.config.slots import GPU, Pool
from imagen_actors.worker.actors.claimer import claimer
from imagen_actors.worker.actors.messages import ClaimedWork, Wake
from imagen_actors.worker.actors.slots import SlotBoard
from tests.unit.test_claimer_health import BackendQueue

REMOTE = "remote:flux"


def board() -> SlotBoard:
    return SlotBoard([Pool(GPU, 1, ("mock",)), Pool(REMOTE, 2, ("flux",))])


async def start_claimer(n: trio.Nursery, queue: BackendQueue, slots: SlotBoard) -> None:
    _wake_send, wake_recv = trio.open_memory_channel[Wake](1)
    n.start_soon(
        lambda: claimer(
            queue, worker_id="w", lease_s=60, backends=["flux", "mock"],
            backend_absent_after_s=600, slots=slots, wakes=wake_recv,
        )
    )  # fmt: skip


async def test_remote_jobs_are_claimed_while_the_gpu_is_busy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = BackendQueue({"mock": 2, "flux": 3})
    slots = board()
    got: list[ClaimedWork] = []
    async with trio.open_nursery() as n:
        await start_claimer(n, queue, slots)
        # The GPU's one slot takes a job and keeps it (never asks again); the remote pool's
        # two slots each take one.
        got.append(await slots.next_work(GPU))
        got += [await slots.next_work(REMOTE), await slots.next_work(REMOTE)]
        await trio.sleep(60)
        n.cancel_scope.cancel()
    assert [w.submitted.backend for w in got] == ["mock", "flux", "flux"]
    # Only the GPU was free at first; once its slot was taken, the claims asked only for
    # the remote backend, and none was made while no slot was free: the other jobs stay
    # pending, never running.
    assert queue.asked[0] == ["mock"] and all(a == ["flux"] for a in queue.asked[1:])
    assert sorted(b for b, _ in queue.pending) == ["flux", "mock"]


async def test_a_slot_that_frees_wakes_the_claimer(autojump_clock: trio.testing.MockClock) -> None:
    queue = BackendQueue({"mock": 1})
    slots = board()
    async with trio.open_nursery() as n:
        await start_claimer(n, queue, slots)
        await trio.sleep(3600)  # no slot free: nothing claimed, however long
        assert queue.asked == [] and slots.free(GPU) == 0
        with trio.fail_after(1):
            work = await slots.next_work(GPU)  # the GPU's Executor is free again
        n.cancel_scope.cancel()
    assert work.submitted.backend == "mock"


async def test_a_slot_left_without_work_is_not_counted_free(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slots = board()
    async with trio.open_nursery() as n:
        n.start_soon(slots.next_work, REMOTE)
        await trio.sleep(1)
        assert slots.free(REMOTE) == 1 and slots.offered(["mock", "flux"]) == ["flux"]
        n.cancel_scope.cancel()
    assert slots.free(REMOTE) == 0 and slots.offered(["mock", "flux"]) == []
