"""What a running worker knows about its own health, for /readyz, sd_notify and metrics.

The daemon's ``WorkerHandle`` extends this with the controls (cancel scopes) that only its
owner uses; telemetry reads this part and nothing of the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

import attrs
import trio

# A crashed actor keeps the worker "not ready" for this long after it restarts: long enough
# for a scrape or a load balancer to see it, short enough that a one-off crash clears.
CRASH_VISIBLE_S: Final = 30.0


@attrs.frozen
class Crash:
    at: float  # trio.current_time()
    error: str


class DependencyView(Protocol):
    """The health of the worker's backends and store (``worker.health.HealthBoard``)."""

    def up(self) -> Mapping[str, bool]: ...

    def problems(self) -> list[str]: ...


@attrs.define
class WorkerHealth:
    worker_id: str
    listening: trio.Event = attrs.field(factory=trio.Event)
    # Set by stop_intake/abort: the worker takes no new jobs (readyz 503, STOPPING=1).
    stopping: trio.Event = attrs.field(factory=trio.Event)
    # Whether a LISTEN connection is open right now (``listening`` only says it was once).
    listen_up: bool = False
    # Where worker.http is served, once bound (port 0 picks a free one).
    http_address: tuple[str, int] | None = None
    restarts: dict[str, int] = attrs.field(factory=dict)
    last_crash: dict[str, Crash] = attrs.field(factory=dict)
    # Set by the daemon once its HealthBoard exists.
    dependencies: DependencyView | None = None

    def dependency_problem(self) -> str | None:
        """The unhealthy dependencies, named with since when and why; None when all are up."""
        problems = self.dependencies.problems() if self.dependencies is not None else []
        return "; ".join(problems) or None

    def dependencies_up(self) -> Mapping[str, bool]:
        return self.dependencies.up() if self.dependencies is not None else {}

    def record_crash(self, name: str, exc: BaseException) -> None:
        """The supervisor's ``on_restart``: count it and remember what it was."""
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self.last_crash[name] = Crash(trio.current_time(), f"{type(exc).__name__}: {exc}")

    def crash_problem(self) -> str | None:
        """The most recent actor crash within ``CRASH_VISIBLE_S``, as a reason; else None."""
        now = trio.current_time()
        recent = [
            (c.at, name, c) for name, c in self.last_crash.items() if now - c.at < CRASH_VISIBLE_S
        ]
        if not recent:
            return None
        _, name, crash = max(recent)
        n = self.restarts.get(name, 0)
        return (
            f"actor {name} crashed {now - crash.at:.0f}s ago ({crash.error}); "
            f"restarted by its supervisor ({n} restart{'s' if n != 1 else ''} so far)"
        )
