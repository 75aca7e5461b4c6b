"""sd_notify(3) over $NOTIFY_SOCKET with Trio sockets; a no-op when the variable is unset.

systemd (Type=notify) reads datagrams such as ``READY=1``, ``STATUS=...``, ``WATCHDOG=1``
and ``STOPPING=1``. A socket path starting with ``@`` lives in the abstract namespace.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Final

import trio

ENV_SOCKET: Final = "NOTIFY_SOCKET"
ENV_WATCHDOG_USEC: Final = "WATCHDOG_USEC"
ENV_WATCHDOG_PID: Final = "WATCHDOG_PID"
log = logging.getLogger("imagen_actors.sdnotify")


def socket_address(raw: str) -> str | bytes:
    """``@name`` is the abstract namespace (a leading NUL byte); anything else is a path."""
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """Half of $WATCHDOG_USEC in seconds, or None when the watchdog is off or not for us."""
    env = os.environ if env is None else env
    usec = env.get(ENV_WATCHDOG_USEC, "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get(ENV_WATCHDOG_PID, "")
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


class Notifier:
    """Sends sd_notify messages; every method is a no-op without $NOTIFY_SOCKET.

    A failed send is logged once and never raised: systemd bookkeeping must not stop the
    worker.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get(ENV_SOCKET, "")
        self.address: str | bytes | None = socket_address(raw) if raw else None
        self._sock: trio.socket.SocketType | None = None
        self._warned = False
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    async def send(self, *lines: str) -> bool:
        """Send one datagram of ``KEY=value`` lines; True when it was delivered."""
        if self.address is None or self._closed:
            return False
        try:
            if self._sock is None:
                self._sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            await self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify to %r failed: %s", self.address, exc)
                self._warned = True
            return False
        return True

    async def ready(self, status: str) -> bool:
        return await self.send("READY=1", f"STATUS={status}")

    async def status(self, status: str) -> bool:
        return await self.send(f"STATUS={status}")

    async def watchdog(self) -> bool:
        return await self.send("WATCHDOG=1")

    async def stopping(self, status: str = "stopping") -> bool:
        return await self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        """Release the socket; later sends are no-ops."""
        self._closed = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None
