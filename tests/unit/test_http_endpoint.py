from __future__ import annotations

import trio

from imagen_actors.observability.http import Response, serve_http

CAP = 8


async def ok(path: str) -> Response:
    return Response(200, f"ok {path}\n".encode())


async def get(address: tuple[str, int], path: str) -> bytes:
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        chunks = []
        while chunk := await stream.receive_some(4096):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_an_idle_connection_flood_neither_piles_up_nor_locks_a_scrape_out() -> None:
    """200 idle connections: the server keeps at most its cap open (the oldest are dropped,
    not left to the idle timeout, here an hour) and a real GET behind them is answered."""
    async with trio.open_nursery() as nursery:
        address = await nursery.start(
            lambda task_status: serve_http(
                "127.0.0.1:0",
                ok,
                max_connections=CAP,
                idle_timeout_s=3600,
                task_status=task_status,
            )
        )
        idle = [await trio.open_tcp_stream(*address) for _ in range(200)]
        with trio.fail_after(20):
            reply = await get(address, "/readyz")
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok /readyz\n")
        with trio.fail_after(20):
            # The oldest are closed by the server: they read EOF.
            for stream in idle[: 200 - CAP]:
                assert await stream.receive_some(1) == b""
        for stream in idle:
            await stream.aclose()
        nursery.cancel_scope.cancel()
