"""Cancel requests reach the work in flight: ``imagen.cancel_job`` NOTIFYs
``imagen_job_control`` for a running job, and every lease renewal of this worker's work runs
at once to look (the request itself is in the job's stream, so the payload, untrusted and
coalesced, is never needed: each renewal reads its own job's state under the row lock)."""

from __future__ import annotations

from typing import Final

import trio

from imagen_actors.worker.actors.listener import ListenSource, follow_channel

CONTROL_CHANNEL: Final = "imagen_job_control"
# A lost notification still reaches the work at its next renewal; this only bounds how
# long a silent LISTEN connection goes unchecked.
CONTROL_POLL_S: Final = 30.0


class CancelNotices:
    """Wakes whoever waits in ``wait`` (the lease renewals) when a cancel may have come."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def poke(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


async def control_listener(gateway: ListenSource, notices: CancelNotices) -> None:
    """LISTEN imagen_job_control for the life of the worker and poke the renewals."""

    def on_wake(reason: str) -> None:
        # On (re)connect too: a request sent while nobody listened has no notification.
        if reason != "poll":
            notices.poke()

    await follow_channel(gateway, CONTROL_CHANNEL, on_wake, poll_interval_s=CONTROL_POLL_S)
