from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from imagen_actors.core.backoff import Backoff
from imagen_actors.worker.actors.supervisor import (
    EscalationError,
    RestartPolicy,
    supervise,
)


async def test_crashed_child_restarts_with_backoff(autojump_clock: trio.testing.MockClock) -> None:
    """A child that crashes twice then succeeds is restarted alone, after growing delays."""
    starts: list[float] = []
    restarts: list[str] = []

    async def child() -> None:
        starts.append(trio.current_time())
        if len(starts) < 3:
            raise RuntimeError("boom")

    policy = RestartPolicy(max_restarts=5, period_s=30, backoff=Backoff(base_s=1, cap_s=10))
    await supervise(
        "c",
        child,
        policy=policy,
        rng=lambda: 1.0,
        on_restart=lambda name, exc: restarts.append(name),
    )
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([1.0, 2.0])
    assert restarts == ["c", "c"]


async def test_escalates_past_restart_intensity(autojump_clock: trio.testing.MockClock) -> None:
    """More crashes than max_restarts within the period escalate to the parent."""

    async def child() -> None:
        raise ValueError("always")

    policy = RestartPolicy(max_restarts=3, period_s=60, backoff=Backoff(base_s=0.1, cap_s=1))
    with pytest.raises(EscalationError, match="crashed 4 times"):
        await supervise("bad", child, policy=policy)


async def test_slow_crashes_outside_period_never_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Crashes spaced wider than the period reset the intensity window."""
    count = 0

    async def child() -> None:
        nonlocal count
        count += 1
        if count <= 10:
            await trio.sleep(100)
            raise ValueError("rare")

    policy = RestartPolicy(max_restarts=1, period_s=30, backoff=Backoff(base_s=0.1, cap_s=1))
    await supervise("rare", child, policy=policy)
    assert count == 11


async def test_cancellation_is_not_a_crash(autojump_clock: trio.testing.MockClock) -> None:
    """Cancelling the supervisor stops the child without restarting it."""
    starts = 0

    async def child() -> None:
        nonlocal starts
        starts += 1
        await trio.sleep_forever()

    with trio.move_on_after(5):
        await supervise("c", child)
    assert starts == 1
