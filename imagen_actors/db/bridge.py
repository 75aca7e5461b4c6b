"""asyncpg's asyncio loop in a thread of its own, called from Trio.

asyncpg is an asyncio library and the worker is Trio. trio-asyncio (the bridge until
2026-12) runs asyncio's callbacks as Trio work on the Trio thread, paying a channel hop,
a cancel scope and a callback check per asyncio handle (about 130 per job); here asyncio
runs its own, plain loop in a dedicated thread and the two meet once per call: the Trio
task starts one asyncio task there and sleeps until it ends. bench/bridge.py measures both
(docs/decisions.md, "The database bridge").

What the Gateway relies on, kept from trio-asyncio:

- **One crossing per call**: ``call(fn, *args)`` runs ``fn(*args)`` as one asyncio task; a
  transaction is one call.
- **Cancellation**: cancelling the calling Trio task cancels the asyncio task (asyncpg then
  cancels the statement on the server and gives its connection back to the pool), waits
  until it has ended, and raises ``trio.Cancelled``. A shielded call (the final writes of a
  shutdown) is not cancelled.
- **Callbacks into Trio**: code on the loop thread (LISTEN notifications) reaches Trio only
  through ``TrioToken.run_sync_soon`` (``db.notifications``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import outcome
import trio

T = TypeVar("T")

# How long closing waits for the loop thread to finish what is left on it.
JOIN_TIMEOUT_S: Final = 5.0


class AsyncioThread:
    """A plain asyncio event loop running in its own daemon thread; open with ``running``."""

    def __init__(self, name: str) -> None:
        # The class itself, not the policy's new_event_loop: a process that also imports
        # trio-asyncio (an application embedding us) has its policy replaced.
        self.loop = asyncio.SelectorEventLoop()
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    @classmethod
    @asynccontextmanager
    async def running(cls, name: str = "imagen-asyncio") -> AsyncIterator[AsyncioThread]:
        bridge = cls(name)
        bridge._thread.start()
        try:
            yield bridge
        finally:
            bridge.loop.call_soon_threadsafe(bridge.loop.stop)
            # Milliseconds normally (the pool is closed by then); bounded all the same.
            bridge._thread.join(JOIN_TIMEOUT_S)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
            # Whatever is still running (a call abandoned by a crashed Trio run) ends here.
            left = asyncio.all_tasks(self.loop)
            for task in left:
                task.cancel()
            if left:
                self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` on the loop thread; its result or exception returns."""
        task = trio.lowlevel.current_task()
        token, loop = self._token, self.loop
        started: list[asyncio.Task[T]] = []
        raise_cancel: Callable[[], Any] | None = None

        async def body() -> T:
            # Inside the task, so that even fn's synchronous errors come back to the caller.
            return await fn(*args, **kwargs)

        def done(finished: asyncio.Task[T]) -> None:
            # A task left behind by a Trio run that has ended: nobody waits for it.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(
                    trio.lowlevel.reschedule, task, outcome.capture(finished.result)
                )

        def start() -> None:
            started.append(loop.create_task(body()))
            started[0].add_done_callback(done)

        def cancel() -> None:
            # Queued after start() by the same thread-safe FIFO, so the task exists.
            started[0].cancel()

        def abort(raise_cancel_arg: Callable[[], Any]) -> trio.lowlevel.Abort:
            nonlocal raise_cancel
            raise_cancel = raise_cancel_arg
            loop.call_soon_threadsafe(cancel)
            # Keep waiting: the asyncio task reports back once it has really ended.
            return trio.lowlevel.Abort.FAILED

        loop.call_soon_threadsafe(start)
        try:
            result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        except asyncio.CancelledError:
            if raise_cancel is None:
                raise
            raise_cancel()
            raise  # not reached: raise_cancel raises trio.Cancelled
        return result
