"""A small OTP-style supervisor: restart a crashed actor alone, with backoff and an intensity cap.

trio has no restart supervisor (tractor neither), so this is ours: each child runs in a
loop; a crash is logged and the child restarts after an exponential, jittered delay; more
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

log = logging.getLogger("imagen_actors.supervisor")


@attrs.frozen
class RestartPolicy:
    max_restarts: int = 5
    period_s: float = 30.0
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 10.0


DEFAULT_POLICY: Final = RestartPolicy()


class EscalationError(Exception):
    """An actor crashed more often than its restart intensity allows."""


def backoff_s(restart: int, policy: RestartPolicy, rng: Callable[[], float]) -> float:
    """Delay before restart number ``restart`` (1-based): exponential, full jitter on top half."""
    ceiling = min(policy.backoff_cap_s, policy.backoff_base_s * 2 ** (restart - 1))
    return float(ceiling / 2 + ceiling / 2 * rng())


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
            delay = backoff_s(restart, policy, rng)
            log.warning("actor %s crashed (%r); restart %d in %.2fs", name, exc, restart, delay)
            if on_restart is not None:
                on_restart(name, exc)
            await trio.sleep(delay)
