"""Listener: LISTEN imagen_jobs on a dedicated connection; a Wake per notification, a safety
poll every ``poll_interval_s``, and reconnection with capped backoff when the connection dies."""

from __future__ import annotations

import contextlib
import logging
from typing import Final

import trio

from imagen_actors.core.backoff import Backoff
from imagen_actors.core.errors import DatabaseUnavailableError
from imagen_actors.db.gateway import Gateway
from imagen_actors.worker.actors.messages import Wake

CHANNEL: Final = "imagen_jobs"
RECONNECT: Final = Backoff(base_s=0.1, cap_s=10.0)
log = logging.getLogger("imagen_actors.listener")


def wake(send: trio.MemorySendChannel[Wake], reason: str) -> None:
    """Non-blocking: a Wake already buffered covers this one (the channel coalesces)."""
    with contextlib.suppress(trio.WouldBlock):
        send.send_nowait(Wake(reason))


async def listener(
    gateway: Gateway,
    wakes: trio.MemorySendChannel[Wake],
    *,
    poll_interval_s: float,
    listening: trio.Event | None = None,
    lost: trio.Event | None = None,
) -> None:
    failures = 0
    while True:
        try:
            async with gateway.listen(CHANNEL) as notes:
                failures = 0
                if listening is not None:
                    listening.set()
                # Anything inserted while we were not listening has no notification coming.
                wake(wakes, "listening")
                while True:
                    with trio.move_on_after(poll_interval_s) as poll:
                        try:
                            await notes.receive()
                        except trio.EndOfChannel:
                            raise DatabaseUnavailableError("LISTEN connection closed") from None
                    wake(wakes, "poll" if poll.cancelled_caught else "notify")
        except DatabaseUnavailableError as exc:
            failures += 1
            if lost is not None:
                lost.set()
            delay = RECONNECT.delay_s(failures)
            log.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, delay)
            # Keep the safety net alive while reconnecting: the pool may still work.
            wake(wakes, "reconnecting")
            await trio.sleep(delay)
