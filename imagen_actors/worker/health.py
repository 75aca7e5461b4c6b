"""Health per dependency: each backend instance and the object store.

A dependency or configuration fault (connection refused, a timeout, a 5xx or 429, a rejected
key, a missing bucket, model or node class) marks that dependency unhealthy instead of
failing the job. While it is unhealthy the Claimer takes none of the jobs that need it, so
they wait pending with their attempts untouched, and ``probing`` checks it with capped,
jittered backoff (``PROBE_BACKOFF``) until a probe passes. Changes, not probes, are logged;
``HealthBoard.snapshot`` feeds the worker's row in ``imagen.workers``, /readyz and /metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import attrs
import trio

from imagen_actors.core.backoff import Backoff
from imagen_actors.core.errors import Fault

log = logging.getLogger("imagen_actors.health")

STORE: Final = "storage"
PROBE_BACKOFF: Final = Backoff(base_s=1.0, cap_s=30.0, floor_s=0.5)

Probe = Callable[[], Awaitable[None]]
"""Returns when the dependency works; raises ``DependencyFault`` saying why not."""


class DependencyFault(Exception):
    """A dependency is down (``dependency``) or set up wrong (``configuration``)."""

    def __init__(self, message: str, *, fault: Fault) -> None:
        super().__init__(message)
        self.fault = fault


@attrs.frozen
class DependencyState:
    healthy: bool = True
    fault: Fault | None = None
    reason: str | None = None
    # Wall clock (for people and other hosts) and Trio clock (for max_wait_s) of the change.
    since: datetime | None = None
    since_t: float | None = None

    def describe(self, name: str) -> str:
        if self.healthy:
            return f"{name} ok"
        when = f" since {self.since:%H:%M:%S}" if self.since is not None else ""
        kind = "misconfigured" if self.fault == "configuration" else "down"
        return f"{name} {kind}{when}: {self.reason}"


@attrs.define
class HealthBoard:
    """The health of every dependency this worker uses; shared by the actors of one worker."""

    names: Sequence[str]
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    _states: dict[str, DependencyState] = attrs.field(init=False)
    _changed: trio.Event = attrs.field(init=False, factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        self._states = {name: DependencyState() for name in self.names}

    def state(self, name: str) -> DependencyState:
        return self._states.get(name, DependencyState())

    def healthy(self, name: str) -> bool:
        return self.state(name).healthy

    def healthy_among(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.healthy(n)]

    def unhealthy(self) -> dict[str, DependencyState]:
        return {n: s for n, s in self._states.items() if not s.healthy}

    def mark_unhealthy(self, name: str, reason: str, *, fault: Fault) -> bool:
        """Record the fault; True when this changed the dependency's state (it was healthy)."""
        before = self.state(name)
        if not before.healthy:
            if before.reason != reason or before.fault != fault:
                # Same outage, new symptom: keep "since", update why.
                self._states[name] = attrs.evolve(before, reason=reason, fault=fault)
            return False
        self._states[name] = DependencyState(
            healthy=False, fault=fault, reason=reason, since=self.now(), since_t=trio.current_time()
        )
        log.warning("%s", self._states[name].describe(name))
        self._signal()
        return True

    def mark_healthy(self, name: str) -> bool:
        before = self.state(name)
        if before.healthy:
            return False
        self._states[name] = DependencyState(since=self.now(), since_t=trio.current_time())
        down_s = trio.current_time() - (before.since_t or trio.current_time())
        log.warning("%s ok again after %.0fs (%s)", name, down_s, before.reason)
        self._signal()
        return True

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        """Until the next change of any dependency's state."""
        await self._changed.wait()

    def changed(self) -> trio.Event:
        """Set at the next change: taken before reading the state, it cannot miss one."""
        return self._changed

    def up(self) -> dict[str, bool]:
        """Every dependency and whether it is healthy (the ``imagen_dependency_up`` gauge)."""
        return {name: self.healthy(name) for name in self._states}

    def problems(self) -> list[str]:
        """One line per unhealthy dependency ("flux down since 12:03:00: refused")."""
        return [s.describe(name) for name, s in sorted(self.unhealthy().items())]

    def snapshot(self) -> dict[str, Any]:
        """For ``imagen.workers.health``: the unhealthy dependencies, JSON-ready."""
        return {
            name: {
                "fault": s.fault,
                "reason": s.reason,
                "since": s.since.isoformat() if s.since is not None else None,
            }
            for name, s in self.unhealthy().items()
        }


def probe_backoff(min_s: float, max_s: float) -> Backoff:
    """``worker.probe_min_s`` .. ``worker.probe_max_s`` as a probe backoff (PROBE_BACKOFF's
    shape: jittered between half the first gap and the cap)."""
    return Backoff(base_s=min_s, cap_s=max_s, floor_s=min_s / 2)


async def probing(
    board: HealthBoard, name: str, probe: Probe, backoff: Backoff = PROBE_BACKOFF
) -> None:
    """Forever: while ``name`` is unhealthy, probe it with backoff; mark it healthy when a
    probe passes. Runs beside the actors for the life of the worker."""
    while True:
        if board.healthy(name):
            await board.wait_changed()
            continue
        failures = 0
        while not board.healthy(name):
            failures += 1
            with trio.move_on_after(backoff.delay_s(failures)):
                # A change (e.g. a successful job marked it healthy) ends the wait early.
                await board.wait_changed()
            if board.healthy(name):
                break
            try:
                await probe()
            except DependencyFault as exc:
                board.mark_unhealthy(name, str(exc), fault=exc.fault)
                continue
            board.mark_healthy(name)
