"""The fake ComfyUI's websocket: the 101 upgrade, then frames from a channel (wsproto).

``None`` on the channel closes the socket (code 1000); pings are answered; the client's
frames (feature flags) are read and ignored.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

import h11
import trio
import wsproto
import wsproto.events as wse

_WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"


async def serve_websocket(
    stream: trio.SocketStream,
    conn: h11.Connection,
    headers: dict[bytes, bytes],
    receive: trio.MemoryReceiveChannel[str | bytes | None],
) -> None:
    """Upgrade ``stream`` and send what ``receive`` yields until either side closes."""
    key = headers.get(b"sec-websocket-key", b"")
    accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
    data = conn.send(
        h11.InformationalResponse(
            status_code=101,
            headers=[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept),
            ],
        )
    )
    await stream.send_all(data)
    ws = wsproto.connection.Connection(wsproto.ConnectionType.SERVER)
    leftover, _ = conn.trailing_data
    lock = trio.Lock()

    async def write(event: wse.Event) -> None:
        async with lock:
            await stream.send_all(ws.send(event))

    async def writer(cancel: trio.CancelScope) -> None:
        async for item in receive:
            if item is None:
                await write(wse.CloseConnection(code=1000))
                break
            await write(
                wse.TextMessage(data=item) if isinstance(item, str) else wse.BytesMessage(data=item)
            )
        cancel.cancel()

    async def reader(cancel: trio.CancelScope) -> None:
        pending = leftover
        while True:
            ws.receive_data(pending)
            for event in ws.events():
                if isinstance(event, wse.Ping):
                    await write(event.response())
                elif isinstance(event, wse.CloseConnection):
                    if ws.state == wsproto.connection.ConnectionState.REMOTE_CLOSING:
                        await write(event.response())
                    cancel.cancel()
                    return
            pending = await stream.receive_some(65536)
            if not pending:
                cancel.cancel()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer, nursery.cancel_scope)
        nursery.start_soon(reader, nursery.cancel_scope)
