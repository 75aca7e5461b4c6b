"""A tiny Trio-native HTTP/1.1 server (h11) for /healthz, /readyz and /metrics.

One request per connection (``Connection: close``), GET and HEAD only, bounded request
size and time, and at most ``MAX_CONNECTIONS`` open at once: past that the oldest
connection still waiting for its request is dropped to make room, so a flood of idle
connections can neither use up the worker's file descriptors (the Executor, the database
pool and the storage client need them) nor lock a real scrape out. Enough for Prometheus
and a load balancer; not a general web server.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import attrs
import h11
import trio

from imagen_actors.core.errors import ConfigError

MAX_REQUEST_BYTES: Final = 16 * 1024
# A scrape or probe sends its request at once; a connection idle this long is dropped.
REQUEST_TIMEOUT_S: Final = 5.0
# Prometheus and a health checker need a handful; the rest is a flood.
MAX_CONNECTIONS: Final = 32
log = logging.getLogger("imagen_actors.http")


@attrs.frozen
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Handler = Callable[[str], Awaitable[Response]]
"""Given the request path (without the query string), the response."""


def parse_address(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) from worker.http."""
    host, sep, port = spec.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"worker.http must be HOST:PORT such as 127.0.0.1:9464 (got {spec!r})")
    return host, int(port)


async def serve_http(
    spec: str,
    handler: Handler,
    *,
    max_connections: int = MAX_CONNECTIONS,
    idle_timeout_s: float = REQUEST_TIMEOUT_S,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``spec`` and serve until cancelled; ``started`` with the bound address."""
    host, port = parse_address(spec)
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise ConfigError(f"worker.http {spec}: cannot listen: {exc}") from exc
    sockname = listeners[0].socket.getsockname()
    bound = (str(sockname[0]), int(sockname[1]))
    log.info("HTTP endpoint on http://%s:%d (/healthz /readyz /metrics)", *bound)
    # Connections still reading their request, oldest first (dicts keep insertion order).
    waiting: dict[trio.SocketStream, trio.CancelScope] = {}

    async def admit(stream: trio.SocketStream) -> None:
        if len(waiting) >= max_connections:
            oldest = next(iter(waiting))
            waiting.pop(oldest).cancel()
        scope = trio.CancelScope()
        waiting[stream] = scope
        try:
            with scope:
                await _connection(
                    stream, handler, idle_timeout_s, lambda: waiting.pop(stream, None)
                )
        finally:
            waiting.pop(stream, None)
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, admit, listeners)
        task_status.started(bound)


async def _connection(
    stream: trio.SocketStream,
    handler: Handler,
    idle_timeout_s: float,
    request_read: Callable[[], object],
) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    try:
        with trio.move_on_after(idle_timeout_s):
            request = await _read_request(stream, conn)
            if request is None:
                return
            # It is being answered now: no longer a candidate for eviction.
            request_read()
            if request.method not in (b"GET", b"HEAD"):
                response = Response(405, b"method not allowed\n")
            else:
                path = request.target.decode("ascii", "replace").split("?", 1)[0]
                try:
                    response = await handler(path)
                except Exception:
                    # A broken page must not take the worker down with it.
                    log.exception("HTTP handler for %s failed", path)
                    response = Response(500, b"internal error\n")
            await _write(stream, conn, response, head=request.method == b"HEAD")
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as exc:
        log.debug("HTTP connection dropped: %s", exc)


async def _read_request(stream: trio.SocketStream, conn: h11.Connection) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(4096))  # b"" is EOF
            continue
        if isinstance(event, h11.Request):
            return event
        return None


async def _write(
    stream: trio.SocketStream, conn: h11.Connection, response: Response, *, head: bool
) -> None:
    headers = [
        ("Content-Type", response.content_type),
        ("Content-Length", str(len(response.body))),
        ("Connection", "close"),
        ("Cache-Control", "no-store"),
    ]
    out = conn.send(h11.Response(status_code=response.status, headers=headers))
    if not head:
        out = (out or b"") + (conn.send(h11.Data(data=response.body)) or b"")
    out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
    await stream.send_all(out)
