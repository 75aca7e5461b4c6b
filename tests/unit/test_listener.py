from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from imagen_actors.core.errors import DatabaseUnavailableError
from imagen_actors.db.notifications import Notifications
from imagen_actors.worker.actors.listener import MIN_WAKE_GAP_S, listener
from imagen_actors.worker.actors.messages import Wake


class FakeListenGateway:
    """Stands in for Gateway.listen: notifications are fed by the test; a connection can be
    made to drop, and connecting can fail a number of times."""

    def __init__(self, fail_connects: int = 0) -> None:
        self.fail_connects = fail_connects
        self.connects = 0
        self.current: Notifications | None = None

    @asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[Notifications]:
        self.connects += 1
        if self.fail_connects:
            self.fail_connects -= 1
            raise DatabaseUnavailableError("connection refused")
        self.current = Notifications()
        yield self.current

    def drop(self) -> None:
        assert self.current is not None
        self.current.close()


async def collect(recv: trio.MemoryReceiveChannel[Wake], until: float) -> list[tuple[float, str]]:
    got: list[tuple[float, str]] = []
    with trio.move_on_at(until):
        async for w in recv:
            got.append((trio.current_time(), w.reason))
    return got


async def run_listener(gw: Any, poll: float, body: Any) -> list[tuple[float, str]]:
    send, recv = trio.open_memory_channel[Wake](0)
    async with trio.open_nursery() as n:
        n.start_soon(lambda: listener(gw, send, poll_interval_s=poll))
        result = await body(gw, recv)
        n.cancel_scope.cancel()
    return result  # type: ignore[no-any-return]


async def test_safety_poll_wakes_without_any_notify(autojump_clock: trio.testing.MockClock) -> None:
    """With no NOTIFY at all (a lost notification), a Wake still comes every poll interval."""

    async def body(gw: FakeListenGateway, recv: Any) -> Any:
        return await collect(recv, trio.current_time() + 16)

    wakes = await run_listener(FakeListenGateway(), 5.0, body)
    reasons = [r for _, r in wakes]
    assert reasons[0] == "listening"
    assert reasons[1:] == ["poll", "poll", "poll"]
    assert [round(t) for t, _ in wakes[1:]] == [5, 10, 15]


async def test_notification_wakes_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """A NOTIFY produces a Wake immediately, not at the next poll."""

    async def body(gw: FakeListenGateway, recv: Any) -> Any:
        assert (await recv.receive()).reason == "listening"
        await trio.sleep(1)
        assert gw.current is not None
        gw.current.notify("job-id")
        w = await recv.receive()
        return [(trio.current_time(), w.reason)]

    ((t, reason),) = await run_listener(FakeListenGateway(), 5.0, body)
    assert reason == "notify" and t == pytest.approx(1.0)


async def test_reconnects_with_backoff_and_wakes(autojump_clock: trio.testing.MockClock) -> None:
    """A dropped LISTEN connection is re-opened (after refused attempts) and then wakes."""

    async def body(gw: FakeListenGateway, recv: Any) -> Any:
        assert (await recv.receive()).reason == "listening"
        gw.fail_connects = 3
        gw.drop()
        return await collect(recv, trio.current_time() + 3)

    gw = FakeListenGateway()
    wakes = await run_listener(gw, 60.0, body)
    reasons = [r for _, r in wakes]
    assert reasons.count("reconnecting") == 4
    assert reasons[-1] == "listening"
    assert gw.connects == 5


async def test_a_flood_of_notifications_is_a_few_wakes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """100,000 notifications arriving over one second give at most one Wake per
    MIN_WAKE_GAP_S, the first at once; the Claimer never sees a Wake per notification."""

    async def body(gw: FakeListenGateway, recv: Any) -> Any:
        assert (await recv.receive()).reason == "listening"
        assert gw.current is not None
        notes = gw.current

        async def flood() -> None:
            for i in range(100_000):
                notes.notify(str(i))
                if i % 100 == 0:
                    await trio.sleep(0.001)

        async with trio.open_nursery() as n:
            n.start_soon(flood)
            got = await collect(recv, trio.current_time() + 1.5)
        return got

    wakes = await run_listener(FakeListenGateway(), 60.0, body)
    notifies = [t for t, r in wakes if r == "notify"]
    assert 1 <= len(notifies) <= 1 + 1.5 / MIN_WAKE_GAP_S
    assert notifies[0] == pytest.approx(0.0, abs=0.002)
