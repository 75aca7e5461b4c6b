"""Listener: LISTEN imagen_jobs on a dedicated connection; a Wake when notifications came
(coalesced, and at most one per ``MIN_WAKE_GAP_S``), a safety poll every ``poll_interval_s``,
and reconnection with backoff when the connection dies."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol

import trio

from imagen_actors.core.backoff import Backoff
from imagen_actors.core.errors import DatabaseUnavailableError
from imagen_actors.db.notifications import ListenerClosedError, Notifications
from imagen_actors.worker.actors.messages import Wake

CHANNEL: Final = "imagen_jobs"
RECONNECT: Final = Backoff(base_s=0.1, cap_s=10.0)
# A Wake makes the Claimer look at the queue once; one that drains a backlog claims job after
# job without further Wakes. So Wakes faster than this only buy empty claims: under a NOTIFY
# flood (any role may NOTIFY) they would be a claim loop. The first one is never delayed.
MIN_WAKE_GAP_S: Final = 0.02
log = logging.getLogger("imagen_actors.listener")


class ListenSource(Protocol):
    def listen(self, channel: str) -> AbstractAsyncContextManager[Notifications]: ...


def wake(send: trio.MemorySendChannel[Wake], reason: str) -> None:
    """Non-blocking: a Wake already buffered covers this one (the channel coalesces)."""
    with contextlib.suppress(trio.WouldBlock):
        send.send_nowait(Wake(reason))


async def listener(
    gateway: ListenSource,
    wakes: trio.MemorySendChannel[Wake],
    *,
    poll_interval_s: float,
    listening: trio.Event | None = None,
    lost: trio.Event | None = None,
) -> None:
    """Wakes for the Claimer: on (re)connect, on notifications, on the safety poll."""
    await follow_channel(
        gateway,
        CHANNEL,
        lambda reason: wake(wakes, reason),
        poll_interval_s=poll_interval_s,
        listening=listening,
        lost=lost,
    )


async def follow_channel(
    gateway: ListenSource,
    channel: str,
    on_wake: Callable[[str], None],
    *,
    poll_interval_s: float,
    listening: trio.Event | None = None,
    lost: trio.Event | None = None,
) -> None:
    """LISTEN ``channel`` for good: ``on_wake("listening")`` on every (re)connect (nothing
    sent meanwhile reached us), ``"notify"`` when notifications came, ``"poll"`` after
    ``poll_interval_s`` of silence, ``"reconnecting"`` after a loss."""
    failures = 0
    while True:
        try:
            async with gateway.listen(channel) as notes:
                failures = 0
                if listening is not None:
                    listening.set()
                on_wake("listening")
                async for reason in _wakes(notes, poll_interval_s):
                    on_wake(reason)
        except (DatabaseUnavailableError, ListenerClosedError) as exc:
            failures += 1
            if lost is not None:
                lost.set()
            delay = RECONNECT.delay_s(failures)
            log.warning(
                "LISTEN %s connection lost (%s); reconnecting in %.1fs", channel, exc, delay
            )
            # Keep the safety net alive while reconnecting: the pool may still work.
            on_wake("reconnecting")
            await trio.sleep(delay)


async def _wakes(notes: Notifications, poll_interval_s: float) -> AsyncIterator[str]:
    """ "notify" when notifications came, "poll" after ``poll_interval_s`` of silence."""
    while True:
        with trio.move_on_after(poll_interval_s) as poll:
            await notes.next()
        if poll.cancelled_caught:
            yield "poll"
            continue
        yield "notify"
        await trio.sleep(MIN_WAKE_GAP_S)
