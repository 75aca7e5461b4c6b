"""A fake ComfyUI over real loopback HTTP + websocket, replaying captured exchanges.

Every body and frame below was recorded from a real ComfyUI 0.3.64 server
(``shared/fixtures/comfyui``; long tracebacks cut to two entries). The server is Trio +
h11 for HTTP and wsproto for the websocket, on 127.0.0.1 with a free port::

    async with comfyui_server("ok") as server:
        backend = build("local", {"type": "comfyui", "url": server.url})

Scenarios (what POST /prompt and the run look like):

- ``ok``: 200, the captured frames of a fresh run (with the captured ``progress`` frames
  and a binary preview frame spliced in before ``executed``), history, /view serves a PNG.
- ``cached``: every node served from cache (no ``executing`` frames except the final null).
- ``unknown_node`` / ``missing_input`` / ``missing_model``: the captured 400 bodies.
- ``malformed``: the captured bare 500 ``text/plain`` page.
- ``runtime_error``: 200, then ``execution_error`` on node 1 (CheckpointLoaderSimple).
- ``interrupted``: 200, then ``execution_interrupted`` (someone else pressed cancel),
  followed by the frames of another client's queued prompt.
- ``no_ws``: /ws answers 404; /history answers ``{}`` twice, then the finished run.
- ``ws_drop``: the socket closes in the middle of the run; history has the result.
- ``hang``: the run starts and then stays on node 3 until POST /interrupt arrives.
- ``slow_post``: POST /prompt never answers (a cancel lands while it is in flight).

``server.requests`` records ``(method, path, json_body)`` for every HTTP request.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import h11
import trio
import trio.lowlevel
import wsproto
import wsproto.events as wse
from PIL import Image

SCENARIOS: Final = (
    "ok",
    "cached",
    "unknown_node",
    "missing_input",
    "missing_model",
    "malformed",
    "runtime_error",
    "interrupted",
    "no_ws",
    "ws_drop",
    "hang",
    "slow_post",
)
_WS_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
_JSON: Final = "application/json; charset=utf-8"


def probe_png() -> bytes:
    """Like the captured view_ok.png: 512x512 RGB filled with 1234567 = (18, 214, 135)."""
    out = io.BytesIO()
    Image.new("RGB", (512, 512), (18, 214, 135)).save(out, format="PNG")
    return out.getvalue()


class FakeComfyUI:
    def __init__(self, scenario: str) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}")
        self.scenario = scenario
        self.url = ""
        self.requests: list[tuple[str, str, Any]] = []
        self.prompted = trio.Event()
        self.interrupted = trio.Event()
        self.png = probe_png()
        self._sockets: dict[str, trio.MemorySendChannel[str | bytes | None]] = {}
        self._done = False
        self._nursery: Any = None
        self._history_polls = 0
        accepted = {
            "ok": PROMPT_OK,
            "no_ws": PROMPT_OK,
            "ws_drop": PROMPT_OK,
            "cached": PROMPT_CACHED,
            "runtime_error": PROMPT_RUNTIME_ERROR,
            "interrupted": PROMPT_SLOW,
            "hang": PROMPT_SLOW,
        }
        self._accepted: dict[str, Any] | None = accepted.get(scenario)
        self.prompt_id: str | None = self._accepted["prompt_id"] if self._accepted else None

    # -- HTTP -------------------------------------------------------------------------

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            await self._handle(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            await stream.aclose()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return
        assert request is not None
        method = request.method.decode()
        split = urlsplit(request.target.decode())
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body.decode(errors="replace")
        self.requests.append((method, split.path, parsed))
        if self.scenario == "slow_post" and (method, split.path) == ("POST", "/prompt"):
            self.prompted.set()
            await trio.sleep_forever()
        if split.path == "/ws" and self.scenario != "no_ws":
            headers = dict(request.headers)
            await self._websocket(stream, conn, headers, query.get("clientId", ""))
            return
        status, ctype, payload = self._route(method, split.path, query, parsed)
        headers_out = [
            ("Content-Length", str(len(payload))),
            ("Connection", "close"),
            ("Server", "Python/3.11 aiohttp/3.14.5"),
        ]
        if ctype:
            headers_out.insert(0, ("Content-Type", ctype))
        data = conn.send(h11.Response(status_code=status, headers=headers_out))
        data += conn.send(h11.Data(data=payload)) if payload else b""
        data += conn.send(h11.EndOfMessage())
        await stream.send_all(data)

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> tuple[int, str | None, bytes]:
        def js(status: int, value: Any) -> tuple[int, str | None, bytes]:
            return status, _JSON, json.dumps(value).encode()

        if method == "GET" and path == "/system_stats":
            return js(200, SYSTEM_STATS)
        if method == "POST" and path == "/prompt":
            return self._prompt(body, js)
        if method == "GET" and path.startswith("/history/"):
            return js(200, self._history(path.removeprefix("/history/")))
        if method == "GET" and path == "/view":
            if query.get("filename") == "probe_00001_.png" and query.get("type") == "output":
                return 200, "image/png", self.png
            return 404, None, b""
        if method == "POST" and path == "/interrupt":
            if (
                self.scenario == "hang"
                and isinstance(body, dict)
                and body.get("prompt_id") == self.prompt_id
            ):
                self.interrupted.set()
            if self.scenario == "slow_post":
                self.interrupted.set()
            return 200, None, b""
        if method == "POST" and path == "/queue":
            return 200, None, b""
        return 404, "text/plain; charset=utf-8", b"404: Not Found"

    def _prompt(self, body: Any, js: Any) -> tuple[int, str | None, bytes]:
        rejected = {
            "unknown_node": PROMPT_UNKNOWN_NODE,
            "missing_input": PROMPT_MISSING_INPUT,
            "missing_model": PROMPT_MISSING_MODEL,
        }
        if self.scenario in rejected:
            result: tuple[int, str | None, bytes] = js(400, rejected[self.scenario])
            return result
        if self.scenario == "malformed" or not isinstance(body, dict):
            return 500, "text/plain; charset=utf-8", PROMPT_MALFORMED_TEXT.encode()
        self.prompted.set()
        client = self._sockets.get(str(body.get("client_id")))
        self._nursery.start_soon(self._play, client)
        result = js(200, self._accepted)
        return result

    def _history(self, prompt_id: str) -> Any:
        if prompt_id != self.prompt_id:
            return {}
        if self.scenario == "no_ws":
            self._history_polls += 1
            self._done = self._history_polls > 2
        if not self._done:
            return {}
        return {
            "ok": HISTORY_OK,
            "no_ws": HISTORY_OK,
            "ws_drop": HISTORY_OK,
            "cached": HISTORY_CACHED,
            "runtime_error": HISTORY_RUNTIME_ERROR,
            "interrupted": HISTORY_INTERRUPTED,
            "hang": HISTORY_INTERRUPTED,
        }[self.scenario]

    # -- the run ----------------------------------------------------------------------

    def _frames(self) -> list[Any]:
        if self.scenario in ("ok", "ws_drop"):
            frames = list(WS_OK[1:])  # WS_OK[0] is the on-connect status frame
            at = next(i for i, f in enumerate(frames) if f["type"] == "executed")
            progress = [
                _swap(f, "6edba928-2469-462c-9466-607bf4c41d70", self.prompt_id)
                for f in WS_PROGRESS
            ]
            preview = b"\x00\x00\x00\x01\x00\x00\x00\x02" + self.png
            frames[at:at] = [progress[0], preview, progress[1], preview]
            return frames
        return {
            "cached": WS_CACHED,
            "runtime_error": WS_RUNTIME_ERROR,
            "interrupted": WS_INTERRUPTED,
            "hang": WS_INTERRUPTED,
        }.get(self.scenario, [])

    async def _play(self, client: trio.MemorySendChannel[str | bytes | None] | None) -> None:
        frames = self._frames()
        if self.scenario == "ws_drop":
            frames = frames[:5]
        for frame in frames:
            if (
                self.scenario == "hang"
                and isinstance(frame, dict)
                and frame["type"] == "execution_interrupted"
            ):
                await self.interrupted.wait()
            if client is not None:
                await client.send(frame if isinstance(frame, bytes) else json.dumps(frame))
            await trio.lowlevel.checkpoint()
        self._done = True
        if self.scenario == "ws_drop" and client is not None:
            await client.send(None)

    # -- websocket --------------------------------------------------------------------

    async def _websocket(
        self,
        stream: trio.SocketStream,
        conn: h11.Connection,
        headers: dict[bytes, bytes],
        client_id: str,
    ) -> None:
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
        send, receive = trio.open_memory_channel[str | bytes | None](1000)
        self._sockets[client_id] = send
        hello = _swap(WS_OK[0], "probe", client_id)
        await send.send(json.dumps(hello))

        async def write(event: wse.Event) -> None:
            async with lock:
                await stream.send_all(ws.send(event))

        async def writer(cancel: trio.CancelScope) -> None:
            async for item in receive:
                if item is None:
                    await write(wse.CloseConnection(code=1000))
                    break
                await write(
                    wse.TextMessage(data=item)
                    if isinstance(item, str)
                    else wse.BytesMessage(data=item)
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

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer, nursery.cancel_scope)
                nursery.start_soon(reader, nursery.cancel_scope)
        finally:
            self._sockets.pop(client_id, None)


def _swap(value: Any, old: str, new: Any) -> Any:
    """``value`` with every string equal to ``old`` replaced by ``new``."""
    if isinstance(value, dict):
        return {k: _swap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, old, new) for v in value]
    return new if value == old else value


@asynccontextmanager
async def comfyui_server(scenario: str) -> AsyncIterator[FakeComfyUI]:
    """Serve ``scenario`` on 127.0.0.1:<free port>; yields the server (``.url`` is the base)."""
    server = FakeComfyUI(scenario)
    async with trio.open_nursery() as nursery:
        server._nursery = nursery
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        server.url = f"http://127.0.0.1:{port}"
        nursery.start_soon(
            partial(trio.serve_listeners, server.handle, listeners, handler_nursery=nursery)
        )
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


# ---- captured bodies and frames (shared/fixtures/comfyui) ----------------------------------

SYSTEM_STATS: Final[Any] = {
    "system": {
        "os": "posix",
        "ram_total": 25276502016,
        "ram_free": 24263081984,
        "comfyui_version": "0.3.64",
        "required_frontend_version": "1.27.10",
        "installed_templates_version": "0.1.95",
        "required_templates_version": "0.1.95",
        "python_version": "3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]",
        "pytorch_version": "2.14.1+cu130",
        "embedded_python": False,
        "argv": [
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            "8188",
            "--disable-auto-launch",
        ],
    },
    "devices": [
        {
            "name": "cpu",
            "type": "cpu",
            "index": None,
            "vram_total": 25276502016,
            "vram_free": 24263081984,
            "torch_vram_total": 25276502016,
            "torch_vram_free": 24263081984,
        }
    ],
}

PROMPT_OK: Final[Any] = {
    "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
    "number": 0,
    "node_errors": {},
}

WS_OK: Final[Any] = [
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "probe"}},
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}},
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}},
    {
        "type": "execution_start",
        "data": {"prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16", "timestamp": 1795389631768},
    },
    {
        "type": "execution_cached",
        "data": {
            "nodes": [],
            "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
            "timestamp": 1795389631769,
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
            "nodes": {
                "1": {
                    "value": 0.0,
                    "max": 1.0,
                    "state": "running",
                    "node_id": "1",
                    "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                }
            },
        },
    },
    {
        "type": "executing",
        "data": {
            "node": "1",
            "display_node": "1",
            "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
            "nodes": {
                "1": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "1",
                    "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                }
            },
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
            "nodes": {
                "1": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "1",
                    "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                },
                "2": {
                    "value": 0.0,
                    "max": 1.0,
                    "state": "running",
                    "node_id": "2",
                    "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
                    "display_node_id": "2",
                    "parent_node_id": None,
                    "real_node_id": "2",
                },
            },
        },
    },
    {
        "type": "executing",
        "data": {
            "node": "2",
            "display_node": "2",
            "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
        },
    },
    {
        "type": "executed",
        "data": {
            "node": "2",
            "display_node": "2",
            "output": {
                "images": [{"filename": "probe_00001_.png", "subfolder": "", "type": "output"}]
            },
            "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
            "nodes": {
                "1": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "1",
                    "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                },
                "2": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "2",
                    "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
                    "display_node_id": "2",
                    "parent_node_id": None,
                    "real_node_id": "2",
                },
            },
        },
    },
    {
        "type": "execution_success",
        "data": {"prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16", "timestamp": 1795389631794},
    },
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}},
    {
        "type": "executing",
        "data": {"node": None, "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16"},
    },
]

HISTORY_OK: Final[Any] = {
    "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16": {
        "prompt": [
            0,
            "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
            {
                "1": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 1234567},
                },
                "2": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["1", 0], "filename_prefix": "probe"},
                },
            },
            {"client_id": "probe"},
            ["2"],
        ],
        "outputs": {
            "2": {"images": [{"filename": "probe_00001_.png", "subfolder": "", "type": "output"}]}
        },
        "status": {
            "status_str": "success",
            "completed": True,
            "messages": [
                [
                    "execution_start",
                    {
                        "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
                        "timestamp": 1795389631768,
                    },
                ],
                [
                    "execution_cached",
                    {
                        "nodes": [],
                        "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
                        "timestamp": 1795389631769,
                    },
                ],
                [
                    "execution_success",
                    {
                        "prompt_id": "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16",
                        "timestamp": 1795389631794,
                    },
                ],
            ],
        },
        "meta": {
            "2": {"node_id": "2", "display_node": "2", "parent_node": None, "real_node_id": "2"}
        },
    }
}

PROMPT_CACHED: Final[Any] = {
    "prompt_id": "3dfc46a0-b895-4759-a42e-1de90c8422a6",
    "number": 1,
    "node_errors": {},
}

WS_CACHED: Final[Any] = [
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}},
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}},
    {
        "type": "execution_start",
        "data": {"prompt_id": "3dfc46a0-b895-4759-a42e-1de90c8422a6", "timestamp": 1795389633050},
    },
    {
        "type": "execution_cached",
        "data": {
            "nodes": ["1", "2"],
            "prompt_id": "3dfc46a0-b895-4759-a42e-1de90c8422a6",
            "timestamp": 1795389633050,
        },
    },
    {
        "type": "executed",
        "data": {
            "node": "2",
            "display_node": "2",
            "output": {
                "images": [{"filename": "probe_00001_.png", "subfolder": "", "type": "output"}]
            },
            "prompt_id": "3dfc46a0-b895-4759-a42e-1de90c8422a6",
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "3dfc46a0-b895-4759-a42e-1de90c8422a6",
            "nodes": {
                "2": {
                    "value": 1,
                    "max": 1,
                    "state": "finished",
                    "node_id": "2",
                    "prompt_id": "3dfc46a0-b895-4759-a42e-1de90c8422a6",
                    "display_node_id": "2",
                    "parent_node_id": None,
                    "real_node_id": "2",
                }
            },
        },
    },
    {
        "type": "execution_success",
        "data": {"prompt_id": "3dfc46a0-b895-4759-a42e-1de90c8422a6", "timestamp": 1795389633050},
    },
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}},
    {
        "type": "executing",
        "data": {"node": None, "prompt_id": "3dfc46a0-b895-4759-a42e-1de90c8422a6"},
    },
]

HISTORY_CACHED: Final[Any] = {
    "3dfc46a0-b895-4759-a42e-1de90c8422a6": {
        "prompt": [
            1,
            "3dfc46a0-b895-4759-a42e-1de90c8422a6",
            {
                "1": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 1234567},
                },
                "2": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["1", 0], "filename_prefix": "probe"},
                },
            },
            {"client_id": "probe"},
            ["2"],
        ],
        "outputs": {
            "2": {"images": [{"filename": "probe_00001_.png", "subfolder": "", "type": "output"}]}
        },
        "status": {
            "status_str": "success",
            "completed": True,
            "messages": [
                [
                    "execution_start",
                    {
                        "prompt_id": "3dfc46a0-b895-4759-a42e-1de90c8422a6",
                        "timestamp": 1795389633050,
                    },
                ],
                [
                    "execution_cached",
                    {
                        "nodes": ["1", "2"],
                        "prompt_id": "3dfc46a0-b895-4759-a42e-1de90c8422a6",
                        "timestamp": 1795389633050,
                    },
                ],
                [
                    "execution_success",
                    {
                        "prompt_id": "3dfc46a0-b895-4759-a42e-1de90c8422a6",
                        "timestamp": 1795389633050,
                    },
                ],
            ],
        },
        "meta": {
            "2": {"node_id": "2", "display_node": "2", "parent_node": None, "real_node_id": "2"}
        },
    }
}

PROMPT_RUNTIME_ERROR: Final[Any] = {
    "prompt_id": "b10cb9a4-001f-4c97-9ae1-e9c05777b03e",
    "number": 10,
    "node_errors": {},
}

WS_RUNTIME_ERROR: Final[Any] = [
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}},
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}},
    {
        "type": "execution_start",
        "data": {"prompt_id": "b10cb9a4-001f-4c97-9ae1-e9c05777b03e", "timestamp": 1795389634079},
    },
    {
        "type": "execution_cached",
        "data": {
            "nodes": [],
            "prompt_id": "b10cb9a4-001f-4c97-9ae1-e9c05777b03e",
            "timestamp": 1795389634080,
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "b10cb9a4-001f-4c97-9ae1-e9c05777b03e",
            "nodes": {
                "1": {
                    "value": 0.0,
                    "max": 1.0,
                    "state": "running",
                    "node_id": "1",
                    "prompt_id": "b10cb9a4-001f-4c97-9ae1-e9c05777b03e",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                }
            },
        },
    },
    {
        "type": "executing",
        "data": {
            "node": "1",
            "display_node": "1",
            "prompt_id": "b10cb9a4-001f-4c97-9ae1-e9c05777b03e",
        },
    },
    {
        "type": "execution_error",
        "data": {
            "prompt_id": "b10cb9a4-001f-4c97-9ae1-e9c05777b03e",
            "node_id": "1",
            "node_type": "CheckpointLoaderSimple",
            "executed": [],
            "exception_message": "Error while deserializing header: header too large\n",
            "exception_type": "safetensors._safetensors_rust.SafetensorError",
            "traceback": [
                '  File "ComfyUI/execution.py", line 496, in execute\n'
                "    <source line omitted from fixture>\n",
                '  File "ComfyUI/execution.py", line 315, in get_output_data\n'
                "    <source line omitted from fixture>\n",
            ],
            "current_inputs": {"ckpt_name": ["bogus_probe.safetensors"]},
            "current_outputs": ["1", "4", "3", "2"],
            "timestamp": 1795389634082,
        },
    },
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}},
    {
        "type": "executing",
        "data": {"node": None, "prompt_id": "b10cb9a4-001f-4c97-9ae1-e9c05777b03e"},
    },
]

HISTORY_RUNTIME_ERROR: Final[Any] = {
    "b10cb9a4-001f-4c97-9ae1-e9c05777b03e": {
        "prompt": [
            10,
            "b10cb9a4-001f-4c97-9ae1-e9c05777b03e",
            {
                "1": {
                    "class_type": "CheckpointLoaderSimple",
                    "inputs": {"ckpt_name": "bogus_probe.safetensors"},
                },
                "2": {
                    "class_type": "EmptyLatentImage",
                    "inputs": {"width": 64, "height": 64, "batch_size": 1},
                },
                "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}},
                "4": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["3", 0], "filename_prefix": "probe"},
                },
            },
            {"client_id": "probe"},
            ["4"],
        ],
        "outputs": {},
        "status": {
            "status_str": "error",
            "completed": False,
            "messages": [
                [
                    "execution_start",
                    {
                        "prompt_id": "b10cb9a4-001f-4c97-9ae1-e9c05777b03e",
                        "timestamp": 1795389634079,
                    },
                ],
                [
                    "execution_cached",
                    {
                        "nodes": [],
                        "prompt_id": "b10cb9a4-001f-4c97-9ae1-e9c05777b03e",
                        "timestamp": 1795389634080,
                    },
                ],
                [
                    "execution_error",
                    {
                        "prompt_id": "b10cb9a4-001f-4c97-9ae1-e9c05777b03e",
                        "node_id": "1",
                        "node_type": "CheckpointLoaderSimple",
                        "executed": [],
                        "exception_message": "Error while deserializing header: header too large\n",
                        "exception_type": "safetensors._safetensors_rust.SafetensorError",
                        "traceback": [
                            "  File "
                            '"ComfyUI/execution.py", '
                            "line 496, "
                            "in "
                            "execute\n"
                            "    "
                            "<source "
                            "line "
                            "omitted "
                            "from "
                            "fixture>\n",
                            "  File "
                            '"ComfyUI/execution.py", '
                            "line 315, "
                            "in "
                            "get_output_data\n"
                            "    "
                            "<source "
                            "line "
                            "omitted "
                            "from "
                            "fixture>\n",
                        ],
                        "current_inputs": {"ckpt_name": ["bogus_probe.safetensors"]},
                        "current_outputs": ["1", "4", "3", "2"],
                        "timestamp": 1795389634082,
                    },
                ],
            ],
        },
        "meta": {},
    }
}

PROMPT_SLOW: Final[Any] = {
    "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
    "number": 11,
    "node_errors": {},
}

WS_INTERRUPTED: Final[Any] = [
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}},
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}},
    {
        "type": "execution_start",
        "data": {"prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90", "timestamp": 1795389635091},
    },
    {
        "type": "execution_cached",
        "data": {
            "nodes": [],
            "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
            "timestamp": 1795389635091,
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
            "nodes": {
                "1": {
                    "value": 0.0,
                    "max": 1.0,
                    "state": "running",
                    "node_id": "1",
                    "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                }
            },
        },
    },
    {
        "type": "executing",
        "data": {
            "node": "1",
            "display_node": "1",
            "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
        },
    },
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 2}}}},
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
            "nodes": {
                "1": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "1",
                    "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                }
            },
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
            "nodes": {
                "1": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "1",
                    "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                },
                "2": {
                    "value": 0.0,
                    "max": 1.0,
                    "state": "running",
                    "node_id": "2",
                    "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
                    "display_node_id": "2",
                    "parent_node_id": None,
                    "real_node_id": "2",
                },
            },
        },
    },
    {
        "type": "executing",
        "data": {
            "node": "2",
            "display_node": "2",
            "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
            "nodes": {
                "1": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "1",
                    "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                },
                "2": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "2",
                    "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
                    "display_node_id": "2",
                    "parent_node_id": None,
                    "real_node_id": "2",
                },
            },
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
            "nodes": {
                "1": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "1",
                    "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                },
                "2": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "2",
                    "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
                    "display_node_id": "2",
                    "parent_node_id": None,
                    "real_node_id": "2",
                },
                "3": {
                    "value": 0.0,
                    "max": 1.0,
                    "state": "running",
                    "node_id": "3",
                    "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
                    "display_node_id": "3",
                    "parent_node_id": None,
                    "real_node_id": "3",
                },
            },
        },
    },
    {
        "type": "executing",
        "data": {
            "node": "3",
            "display_node": "3",
            "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
        },
    },
    {
        "type": "execution_interrupted",
        "data": {
            "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
            "node_id": "3",
            "node_type": "ImageBlur",
            "executed": ["1", "2"],
            "timestamp": 1795389639149,
        },
    },
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}},
    {
        "type": "executing",
        "data": {"node": None, "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90"},
    },
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}},
    {
        "type": "execution_start",
        "data": {"prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8", "timestamp": 1795389639149},
    },
    {
        "type": "execution_cached",
        "data": {
            "nodes": [],
            "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
            "timestamp": 1795389639155,
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
            "nodes": {
                "1": {
                    "value": 0.0,
                    "max": 1.0,
                    "state": "running",
                    "node_id": "1",
                    "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                }
            },
        },
    },
    {
        "type": "executing",
        "data": {
            "node": "1",
            "display_node": "1",
            "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
            "nodes": {
                "1": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "1",
                    "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                }
            },
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
            "nodes": {
                "1": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "1",
                    "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                },
                "2": {
                    "value": 0.0,
                    "max": 1.0,
                    "state": "running",
                    "node_id": "2",
                    "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
                    "display_node_id": "2",
                    "parent_node_id": None,
                    "real_node_id": "2",
                },
            },
        },
    },
    {
        "type": "executing",
        "data": {
            "node": "2",
            "display_node": "2",
            "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
        },
    },
    {
        "type": "executed",
        "data": {
            "node": "2",
            "display_node": "2",
            "output": {
                "images": [{"filename": "probe_00002_.png", "subfolder": "", "type": "output"}]
            },
            "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
        },
    },
    {
        "type": "progress_state",
        "data": {
            "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
            "nodes": {
                "1": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "1",
                    "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
                    "display_node_id": "1",
                    "parent_node_id": None,
                    "real_node_id": "1",
                },
                "2": {
                    "value": 1.0,
                    "max": 1.0,
                    "state": "finished",
                    "node_id": "2",
                    "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8",
                    "display_node_id": "2",
                    "parent_node_id": None,
                    "real_node_id": "2",
                },
            },
        },
    },
    {
        "type": "execution_success",
        "data": {"prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8", "timestamp": 1795389639164},
    },
    {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}},
    {
        "type": "executing",
        "data": {"node": None, "prompt_id": "052d0fe9-9775-4c75-a449-4bbda93604d8"},
    },
]

HISTORY_INTERRUPTED: Final[Any] = {
    "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90": {
        "prompt": [
            11,
            "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
            {
                "1": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": 2048, "height": 2048, "batch_size": 1, "color": 255},
                },
                "2": {
                    "class_type": "ImageBlur",
                    "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0},
                },
                "3": {
                    "class_type": "ImageBlur",
                    "inputs": {"image": ["2", 0], "blur_radius": 31, "sigma": 10.0},
                },
                "4": {
                    "class_type": "SaveImage",
                    "inputs": {"images": ["3", 0], "filename_prefix": "probe_slow"},
                },
            },
            {"client_id": "probe"},
            ["4"],
        ],
        "outputs": {},
        "status": {
            "status_str": "error",
            "completed": False,
            "messages": [
                [
                    "execution_start",
                    {
                        "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
                        "timestamp": 1795389635091,
                    },
                ],
                [
                    "execution_cached",
                    {
                        "nodes": [],
                        "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
                        "timestamp": 1795389635091,
                    },
                ],
                [
                    "execution_interrupted",
                    {
                        "prompt_id": "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90",
                        "node_id": "3",
                        "node_type": "ImageBlur",
                        "executed": ["1", "2"],
                        "timestamp": 1795389639149,
                    },
                ],
            ],
        },
        "meta": {},
    }
}

PROMPT_UNKNOWN_NODE: Final[Any] = {
    "error": {
        "type": "invalid_prompt",
        "message": "Cannot execute because node NoSuchNode does not exist.",
        "details": "Node ID '#1'",
        "extra_info": {},
    },
    "node_errors": {},
}

PROMPT_MISSING_INPUT: Final[Any] = {
    "error": {
        "type": "prompt_outputs_failed_validation",
        "message": "Prompt outputs failed validation",
        "details": "",
        "extra_info": {},
    },
    "node_errors": {
        "1": {
            "errors": [
                {
                    "type": "required_input_missing",
                    "message": "Required input is missing",
                    "details": "width",
                    "extra_info": {"input_name": "width"},
                }
            ],
            "dependent_outputs": ["2"],
            "class_type": "EmptyImage",
        }
    },
}

PROMPT_MISSING_MODEL: Final[Any] = {
    "error": {
        "type": "prompt_outputs_failed_validation",
        "message": "Prompt outputs failed validation",
        "details": "",
        "extra_info": {},
    },
    "node_errors": {
        "1": {
            "errors": [
                {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": "ckpt_name: 'nope.safetensors' not in []",
                    "extra_info": {
                        "input_name": "ckpt_name",
                        "input_config": [
                            [],
                            {"tooltip": "The name of the checkpoint (model) to load."},
                        ],
                        "received_value": "nope.safetensors",
                    },
                }
            ],
            "dependent_outputs": ["4"],
            "class_type": "CheckpointLoaderSimple",
        }
    },
}

PROMPT_MALFORMED_TEXT: Final[Any] = "500 Internal Server Error\n\nServer got itself in trouble"

WS_PROGRESS: Final[Any] = [
    {
        "type": "progress",
        "data": {
            "value": 0,
            "max": 2,
            "prompt_id": "6edba928-2469-462c-9466-607bf4c41d70",
            "node": "2",
        },
    },
    {
        "type": "progress",
        "data": {
            "value": 1,
            "max": 2,
            "prompt_id": "6edba928-2469-462c-9466-607bf4c41d70",
            "node": "2",
        },
    },
]
