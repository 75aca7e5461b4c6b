"""LISTEN notifications, coalesced where they arrive.

Anyone may NOTIFY ``imagen_jobs`` (Postgres checks no privilege for it), so the worker must
not do work per notification: a 5-second flood of 1.4 M from ``anon`` used to stall it for
minutes (an asyncio handle, a hop into Trio and a claim per notification) and let leases
expire. Here a notification costs one attribute check on the asyncio side; any number of
them since the Listener last looked count as one. Payloads are ignored: they are untrusted,
and a notification only ever means "look at the queue".
"""

from __future__ import annotations

import threading

import trio


class ListenerClosedError(Exception):
    """The LISTEN connection is gone; the caller reconnects."""


class Notifications:
    """A level-triggered flag: ``notify`` sets it (O(1), idempotent), ``next`` waits for it
    and clears it.

    ``notify`` and ``close`` may be called from the database's loop thread (``db.bridge``):
    from there they reach Trio through ``run_sync_soon``, at most one hand-off in flight
    however many notifications arrive meanwhile.
    """

    def __init__(self) -> None:
        self._event = trio.Event()
        self._closed = False
        self._token = trio.lowlevel.current_trio_token()
        self._trio_thread = threading.get_ident()
        # A hand-off to the Trio thread is queued and has not run yet.
        self._handing_off = False
        self.received = 0
        # For diagnostics and tests only: never parsed or acted upon (it is untrusted).
        self.last_payload: str | None = None

    def notify(self, payload: str) -> None:
        """Called by the connection for every notification."""
        self.received += 1
        self.last_payload = payload
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if threading.get_ident() == self._trio_thread:
            self._set()
        elif not self._handing_off:
            self._handing_off = True
            self._token.run_sync_soon(self._handed_off)

    def _handed_off(self) -> None:
        # Cleared before the flag is set: a notification arriving from now on hands off
        # again, so none is lost between the two.
        self._handing_off = False
        self._set()

    def _set(self) -> None:
        if not self._event.is_set():
            self._event.set()

    async def next(self) -> None:
        """Wait until at least one notification arrived since the last call."""
        await self._event.wait()
        if self._closed:
            raise ListenerClosedError("LISTEN connection closed")
        self._event = trio.Event()
