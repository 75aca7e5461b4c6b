"""Live updates: one LISTEN on imagen_job_updates for the whole server, fanned out as ticks;
each server-sent-events client then re-reads what changed since its own cursor (payloads are
untrusted and never parsed)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import msgspec
import trio

from imagen_actors.core.errors import DatabaseError
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.notifications import ListenerClosedError
from imagen_actors.web import data

CHANNEL: Final = "imagen_job_updates"
# A safety tick when no notification arrives (a lost LISTEN, a worker heartbeat).
SAFETY_S: Final = 5.0
# At most this many ticks per second, however many notifications arrive.
THROTTLE_S: Final = 0.25
HEARTBEAT_S: Final = 15.0
# The done/failed/cancelled counts of the last 24 h are re-read at most this often.
FINISHED_EVERY_S: Final = 10.0
RECONNECT_S: Final = 1.0

log = logging.getLogger(__name__)


class Ticks:
    """A broadcast: ``current()`` is an Event set at the next tick."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self.count = 0

    def current(self) -> trio.Event:
        return self._event

    def tick(self) -> None:
        self.count += 1
        event, self._event = self._event, trio.Event()
        event.set()


async def listen_forever(
    gw: Gateway, ticks: Ticks, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Tick on every burst of notifications (throttled) and every SAFETY_S; reconnect when
    the LISTEN connection drops."""
    started = False
    while True:
        try:
            async with gw.listen(CHANNEL) as notes:
                if not started:
                    started = True
                    task_status.started()
                while True:
                    with trio.move_on_after(SAFETY_S):
                        await notes.next()
                    ticks.tick()
                    await trio.sleep(THROTTLE_S)
        except (ListenerClosedError, DatabaseError) as exc:
            log.warning("dashboard: LISTEN %s lost (%s); reconnecting", CHANNEL, exc)
            if not started:
                started = True
                task_status.started()
            ticks.tick()
            await trio.sleep(RECONNECT_S)


def sse(event: str, payload: object, *, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return (
        (head + f"event: {event}\n").encode() + b"data: " + msgspec.json.encode(payload) + b"\n\n"
    )


async def stream(
    gw: Gateway, ticks: Ticks, after: int, job: uuid.UUID | None = None
) -> AsyncIterator[bytes]:
    """The body of GET /events: an update after every tick, a comment line as heartbeat;
    with ``job``, a job page's stream: that job's row only."""
    cursor = after
    finished: list[dict[str, Any]] = []
    finished_at = -FINISHED_EVERY_S
    yield b"retry: 2000\n\n"
    while True:
        tick = ticks.current()
        if job is None and trio.current_time() - finished_at >= FINISHED_EVERY_S:
            finished, finished_at = await data.finished_counts(gw), trio.current_time()
        update = await data.live_update(gw, cursor, finished, job)
        cursor = update["cursor"]
        yield sse("update", update, event_id=cursor)
        with trio.move_on_after(HEARTBEAT_S) as idle:
            await tick.wait()
        if idle.cancelled_caught:
            yield b": heartbeat\n\n"
