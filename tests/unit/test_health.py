from __future__ import annotations

import itertools
from datetime import UTC, datetime

import trio
import trio.testing

from imagen_actors.worker.health import PROBE_BACKOFF, DependencyFault, HealthBoard, probing

T0 = datetime(2026, 12, 1, 12, 3, tzinfo=UTC)


def board() -> HealthBoard:
    return HealthBoard(["flux", "storage"], now=lambda: T0)


async def test_a_fault_marks_once_and_keeps_since() -> None:
    """The first fault changes the state (and is logged); repeats only update the reason."""
    b = board()
    assert b.mark_unhealthy("flux", "connection refused", fault="dependency")
    assert not b.mark_unhealthy("flux", "timed out", fault="dependency")
    s = b.state("flux")
    assert (s.healthy, s.reason, s.since) == (False, "timed out", T0)
    assert s.describe("flux") == "flux down since 12:03:00: timed out"
    assert b.healthy_among(["flux", "storage"]) == ["storage"]
    assert b.snapshot() == {
        "flux": {"fault": "dependency", "reason": "timed out", "since": T0.isoformat()}
    }
    assert b.mark_healthy("flux") and not b.mark_healthy("flux")
    assert b.snapshot() == {}


async def test_probes_back_off_until_one_passes(autojump_clock: trio.testing.MockClock) -> None:
    """An unhealthy dependency is probed with growing, capped gaps; a passing probe marks it
    healthy and probing stops until the next fault."""
    b = board()
    probes: list[float] = []
    answers = iter([False] * 8 + [True])

    async def probe() -> None:
        probes.append(trio.current_time())
        if not next(answers):
            raise DependencyFault("connection refused", fault="dependency")

    async with trio.open_nursery() as n:
        n.start_soon(probing, b, "flux", probe)
        await trio.sleep(1)
        assert probes == []  # healthy: nothing to probe
        b.mark_unhealthy("flux", "connection refused", fault="dependency")
        with trio.fail_after(600):
            while not b.healthy("flux"):
                await b.wait_changed()
        await trio.sleep(300)
        n.cancel_scope.cancel()
    assert len(probes) == 9
    gaps = [b2 - a for a, b2 in itertools.pairwise(probes)]
    assert all(PROBE_BACKOFF.floor_s <= g <= PROBE_BACKOFF.cap_s + 1e-9 for g in gaps)


async def test_a_configuration_fault_is_reported_as_misconfigured() -> None:
    """A bad key reads as misconfigured, not down, for the operator."""
    b = board()
    b.mark_unhealthy("storage", "HTTP 403 for the service key", fault="configuration")
    assert b.state("storage").describe("storage").startswith("storage misconfigured since")
