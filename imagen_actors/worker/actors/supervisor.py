"""A small OTP-style supervisor: restart a crashed actor alone, with backoff and an intensity cap.

trio has no restart supervisor (tractor neither), so this is ours: each child runs in a
loop; a crash is logged and the child restarts after ``core.backoff``'s delay; more
than ``max_restarts`` crashes within ``period_s`` escalates the last error to the parent.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

import attrs
import trio

from imagen_actors.core.backoff import Backoff

log = logging.getLogger("imagen_actors.supervisor")


# The floor keeps a crash loop from spinning when the draw comes out near zero.
RESTART_BACKOFF: Final = Backoff(base_s=0.2, cap_s=10.0, floor_s=0.1)


@attrs.frozen
class RestartPolicy:
    max_restarts: int = 5
    period_s: float = 30.0
    backoff: Backoff = RESTART_BACKOFF


DEFAULT_POLICY: Final = RestartPolicy()


class EscalationError(Exception):
    """An actor crashed more often than its restart intensity allows."""


async def supervise(
    name: str,
    child: Callable[[], Awaitable[None]],
    *,
    policy: RestartPolicy = DEFAULT_POLICY,
    on_restart: Callable[[str, BaseException], None] | None = None,
    rng: Callable[[], float] = random.random,
) -> None:
    """Run ``child`` until it returns; restart it on a crash; escalate past the intensity."""
    crashes: deque[float] = deque()
    restart = 0
    while True:
        try:
            await child()
            return
        except Exception as exc:
            now = trio.current_time()
            crashes.append(now)
            while crashes and crashes[0] < now - policy.period_s:
                crashes.popleft()
            if len(crashes) > policy.max_restarts:
                log.error(
                    "actor %s crashed %d times in %.0fs; escalating",
                    name,
                    len(crashes),
                    policy.period_s,
                )
                raise EscalationError(
                    f"actor {name} crashed {len(crashes)} times within {policy.period_s:.0f}s; "
                    f"last error: {exc!r}"
                ) from exc
            restart = len(crashes)
            delay = policy.backoff.delay_s(restart, rng)
            log.warning("actor %s crashed (%r); restart %d in %.2fs", name, exc, restart, delay)
            if on_restart is not None:
                on_restart(name, exc)
            await trio.sleep(delay)
