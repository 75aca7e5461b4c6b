"""The HTTP/1.1 plumbing the fakes share: h11 over a trio stream, one request at a time."""

from __future__ import annotations

from typing import Any

import h11
import trio


async def next_event(conn: h11.Connection, stream: trio.abc.Stream) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(bytes(await stream.receive_some(65536)))


async def read_request(
    conn: h11.Connection, stream: trio.abc.Stream
) -> tuple[h11.Request, bytes] | None:
    """The next request and its whole body; None when the client is done or broke off."""
    event = await next_event(conn, stream)
    if not isinstance(event, h11.Request):
        return None
    body = b""
    while True:
        part = await next_event(conn, stream)
        if isinstance(part, h11.Data):
            body += part.data
        elif isinstance(part, h11.EndOfMessage):
            return event, body
        else:
            return None


async def send(conn: h11.Connection, stream: trio.abc.Stream, *events: Any) -> None:
    data = b"".join(conn.send(e) or b"" for e in events)
    if data:
        await stream.send_all(data)
