from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import trio

from imagen_actors.observability.sdnotify import Notifier, socket_address, watchdog_interval_s


def short_socket_path() -> Path:
    # AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    return Path("/tmp") / f"imagen-notify-{uuid.uuid4().hex[:12]}.sock"


async def receive(sock: trio.socket.SocketType) -> str:
    with trio.fail_after(5):
        data = await sock.recv(4096)
    return data.decode()


def test_no_notify_socket_means_disabled() -> None:
    """Without $NOTIFY_SOCKET the notifier is off (and sending is a no-op)."""
    assert not Notifier({}).enabled


async def test_no_notify_socket_send_is_a_noop() -> None:
    """Sending with no $NOTIFY_SOCKET returns False and raises nothing."""
    assert await Notifier({}).ready("x") is False


def test_abstract_namespace_address() -> None:
    """'@name' maps to the abstract namespace (leading NUL); a path stays a path."""
    assert socket_address("@imagen/notify") == b"\0imagen/notify"
    assert socket_address("/run/user/1000/systemd/notify") == "/run/user/1000/systemd/notify"


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    """WATCHDOG_USEC=30s gives a 15 s interval; unset, zero or another pid gives None."""
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    mine = {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval_s(mine) == 0.5
    assert watchdog_interval_s({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}) is None


async def test_messages_arrive_on_a_path_socket() -> None:
    """READY=1 with STATUS, WATCHDOG=1 and STOPPING=1 arrive as datagrams on a path socket."""
    path = short_socket_path()
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind(str(path))
        try:
            n = Notifier({"NOTIFY_SOCKET": str(path)})
            assert await n.ready("listening")
            assert await receive(sock) == "READY=1\nSTATUS=listening"
            assert await n.watchdog()
            assert await receive(sock) == "WATCHDOG=1"
            assert await n.stopping("bye")
            assert await receive(sock) == "STOPPING=1\nSTATUS=bye"
            n.close()
        finally:
            path.unlink()


async def test_messages_arrive_on_an_abstract_socket() -> None:
    """NOTIFY_SOCKET=@name reaches a socket bound in the abstract namespace."""
    name = f"imagen-test-{uuid.uuid4().hex}"
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind(b"\0" + name.encode())
        n = Notifier({"NOTIFY_SOCKET": f"@{name}"})
        assert await n.status("hello")
        assert await receive(sock) == "STATUS=hello"
        n.close()


async def test_unreachable_socket_is_logged_not_raised() -> None:
    """A $NOTIFY_SOCKET nobody listens on makes send return False, never raise."""
    n = Notifier({"NOTIFY_SOCKET": str(short_socket_path())})
    assert await n.watchdog() is False
    assert await n.watchdog() is False
    n.close()
