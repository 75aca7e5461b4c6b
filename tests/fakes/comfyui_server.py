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
- ``partial_outputs``: 200 whose ``node_errors`` (the captured missing-model entry) drop
  the output nodes in ``server.drop``; the other outputs run (measured on 0.3.64).
- ``vanished``: 200, then the prompt is gone (``POST /queue {"clear": true}`` or a
  restart): GET /queue is idle and /history stays ``{}``, and no frame comes.
- ``ws_image``: a SaveImageWebsocket output (``ws_messages_binary.json``): the image comes
  as type-1 binary frames while that node executes; history ``outputs`` stay ``{}``.
- ``pending_then_start``: 200, the prompt waits in ``queue_pending`` and starts right
  after the first cancel request (POST /queue or /interrupt) that leaves it queued; it
  then runs until a POST /interrupt naming it.

Like the real server: history ``outputs`` and ``executed`` are keyed by the *posted*
graph's output nodes (only those that run); GET /queue lists the prompt as positional
``[number, prompt_id, prompt, extra_data, outputs]`` items while it runs or waits
(``queue_running.json``); ``POST /queue {"delete"}``/``{"clear"}`` drop it only while it
waits; ``server.state`` is ``pending``, ``running``, ``done``, ``deleted``,
``interrupted`` or ``gone``. ``server.requests`` records ``(method, path, json_body)``
for every HTTP request.

``GET /object_info`` answers in the captured shape (``object_info_*.json``) for every node
class of the bundled workflows, each loader's file list holding the files those workflows
name (a server with the models installed); ``server.missing_classes`` and
``server.missing_files`` take some away. ``await server.go_away()`` stops listening and
drops open connections (a restart: connections are refused), ``await server.come_back()``
listens again on the same port.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import h11
import trio
import trio.lowlevel
import wsproto
import wsproto.utilities
from PIL import Image

from tests.fakes.comfyui_object_info import object_info
from tests.fakes.comfyui_ws import serve_websocket

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
    "partial_outputs",
    "vanished",
    "pending_then_start",
    "ws_image",
)
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
        self.drop: set[str] = set()  # output node ids partial_outputs reports as invalid
        self.state: str | None = None
        self._graph: dict[str, Any] = {}
        self._client_id = ""
        self._cancel_seen = False
        self.missing_classes: set[str] = set()
        self.missing_files: set[str] = set()
        self.port = 0
        self._serving: trio.CancelScope | None = None
        accepted = {
            "ok": PROMPT_OK,
            "no_ws": PROMPT_OK,
            "ws_drop": PROMPT_OK,
            "cached": PROMPT_CACHED,
            "runtime_error": PROMPT_RUNTIME_ERROR,
            "interrupted": PROMPT_SLOW,
            "hang": PROMPT_SLOW,
            "partial_outputs": PROMPT_OK,
            "vanished": PROMPT_OK,
            "pending_then_start": PROMPT_SLOW,
            "ws_image": PROMPT_WS_IMAGE,
        }
        self._accepted: dict[str, Any] | None = accepted.get(scenario)
        self.prompt_id: str | None = self._accepted["prompt_id"] if self._accepted else None

    # -- HTTP -------------------------------------------------------------------------

    async def handle(self, stream: trio.SocketStream) -> None:
        # A client that hangs up (alone, or inside the websocket's reader/writer nursery).
        try:
            await self._handle(stream)
        except* (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            h11.ProtocolError,
            wsproto.utilities.LocalProtocolError,  # a frame queued as the client closed
        ):
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
            client_id = query.get("clientId", "")
            send, receive = trio.open_memory_channel[str | bytes | None](1000)
            self._sockets[client_id] = send
            await send.send(json.dumps(_swap(WS_OK[0], "probe", client_id)))
            try:
                await serve_websocket(stream, conn, headers, receive)
            finally:
                self._sockets.pop(client_id, None)
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
        if method == "GET" and path == "/object_info":
            return js(200, self.object_info())
        if method == "POST" and path == "/prompt":
            return self._prompt(body, js)
        if method == "GET" and path.startswith("/history/"):
            return js(200, self._history(path.removeprefix("/history/")))
        if method == "GET" and path == "/view":
            if query.get("filename") == "probe_00001_.png" and query.get("type") == "output":
                return 200, "image/png", self.png
            return 404, None, b""
        if method == "GET" and path == "/queue":
            return js(200, self._queue())
        if method == "POST" and path == "/interrupt":
            # Since 2025 a body naming another prompt (or one that only waits) is a no-op.
            named = isinstance(body, dict) and body.get("prompt_id") == self.prompt_id
            if self.state == "running" and (named or not isinstance(body, dict)):
                self.state = "interrupted"
                self.interrupted.set()
            if self.scenario == "slow_post":
                self.interrupted.set()
            self._cancel_request()
            return 200, None, b""
        if method == "POST" and path == "/queue":
            ids = body.get("delete") if isinstance(body, dict) else None
            cleared = isinstance(body, dict) and body.get("clear") is True
            if self.state == "pending" and (cleared or self.prompt_id in (ids or [])):
                self.state = "deleted"
            self._cancel_request()
            return 200, None, b""
        return 404, "text/plain; charset=utf-8", b"404: Not Found"

    def object_info(self) -> dict[str, Any]:
        """Every class of the bundled workflows, in the captured /object_info shape."""
        return object_info(self.missing_classes, self.missing_files)

    async def go_away(self) -> None:
        """Stop listening and drop every open connection: connections are refused."""
        assert self._serving is not None
        self._serving.cancel()
        self._serving = None
        await trio.lowlevel.checkpoint()

    async def come_back(self) -> None:
        """Listen again on the same port."""
        assert self._serving is None
        await self._nursery.start(self._serve, self.port)

    async def _serve(self, port: int, task_status: trio.TaskStatus[None]) -> None:
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        with trio.CancelScope() as scope:
            self._serving = scope
            async with trio.open_nursery() as handlers:
                handlers.start_soon(
                    partial(trio.serve_listeners, self.handle, listeners, handler_nursery=handlers)
                )
                task_status.started()

    def _cancel_request(self) -> None:
        """pending_then_start: the prompt starts right after the first cancel request."""
        if self.scenario == "pending_then_start" and not self._cancel_seen:
            self._cancel_seen = True
            if self.state == "pending":
                self.state = "running"

    def _outputs(self) -> list[str]:
        """The posted graph's output nodes that the server runs."""
        return [
            node_id
            for node_id, node in self._graph.items()
            if isinstance(node, dict)
            and str(node.get("class_type", "")).startswith(("Save", "Preview"))
            and node_id not in self.drop
        ]

    def _queue(self) -> Any:
        if self.state not in ("running", "pending"):
            return QUEUE_IDLE
        number = QUEUE_RUNNING["queue_running"][0][0]
        item = [number, self.prompt_id, self._graph, {"client_id": self._client_id}]
        item.append(self._outputs())
        return {
            "queue_running": [item] if self.state == "running" else [],
            "queue_pending": [item] if self.state == "pending" else [],
        }

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
        graph = body.get("prompt")
        self._graph = graph if isinstance(graph, dict) else {}
        self._client_id = str(body.get("client_id"))
        accepted = dict(self._accepted or {})
        if self.scenario == "partial_outputs":
            failed = dict(PROMPT_MISSING_MODEL["node_errors"]["1"])
            failed["dependent_outputs"] = sorted(self.drop)
            accepted["node_errors"] = {"1": failed}
        self.state = {"vanished": "gone", "pending_then_start": "pending"}.get(
            self.scenario, "running"
        )
        if self.state == "running":
            client = self._sockets.get(self._client_id)
            self._nursery.start_soon(self._play, client)
        result = js(200, accepted)
        return result

    def _history(self, prompt_id: str) -> Any:
        if prompt_id != self.prompt_id:
            return {}
        if self.scenario == "no_ws":
            self._history_polls += 1
            self._done = self._history_polls > 2
        if not self._done:
            return {}
        entry = {
            "ok": HISTORY_OK,
            "no_ws": HISTORY_OK,
            "ws_drop": HISTORY_OK,
            "cached": HISTORY_CACHED,
            "runtime_error": HISTORY_RUNTIME_ERROR,
            "interrupted": HISTORY_INTERRUPTED,
            "hang": HISTORY_INTERRUPTED,
            "partial_outputs": HISTORY_OK,
            "ws_image": HISTORY_WS_IMAGE,
        }[self.scenario]
        saved = [i for i in self._outputs() if self._graph[i]["class_type"] != "SaveImageWebsocket"]
        return _with_outputs(entry, saved)

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
        if self.scenario == "ws_image":
            # The captured run's output node "2", renamed to the posted graph's.
            ours = next(iter(self._outputs()), "2")
            image = b"\x00\x00\x00\x01\x00\x00\x00\x02" + self.png
            return [image if f.get("binary_frame") else _swap(f, "2", ours) for f in WS_BINARY[1:]]
        return {
            "partial_outputs": WS_OK[1:],
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
        if self.state == "running":
            self.state = "done"
        if self.scenario == "ws_drop" and client is not None:
            await client.send(None)


def _with_outputs(history: Any, output_ids: list[str]) -> Any:
    """The captured history (outputs keyed by the probe graph's node "2") keyed by ours."""
    entry = {}
    for prompt_id, item in history.items():
        captured = item.get("outputs") or {}
        saved = next(iter(captured.values()), None)
        outputs = {node_id: saved for node_id in output_ids} if saved is not None else {}
        entry[prompt_id] = {**item, "outputs": outputs}
    return entry


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
        await nursery.start(server._serve, 0)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()


# ---- captured bodies and frames (shared/fixtures/comfyui), kept as data ---------------------

_CAPTURES: Final[dict[str, Any]] = json.loads(
    Path(__file__).with_name("comfyui_captures.json").read_text(encoding="utf-8")
)
SYSTEM_STATS: Final[Any] = _CAPTURES["SYSTEM_STATS"]
PROMPT_OK: Final[Any] = _CAPTURES["PROMPT_OK"]
WS_OK: Final[Any] = _CAPTURES["WS_OK"]
HISTORY_OK: Final[Any] = _CAPTURES["HISTORY_OK"]
PROMPT_CACHED: Final[Any] = _CAPTURES["PROMPT_CACHED"]
WS_CACHED: Final[Any] = _CAPTURES["WS_CACHED"]
HISTORY_CACHED: Final[Any] = _CAPTURES["HISTORY_CACHED"]
PROMPT_RUNTIME_ERROR: Final[Any] = _CAPTURES["PROMPT_RUNTIME_ERROR"]
WS_RUNTIME_ERROR: Final[Any] = _CAPTURES["WS_RUNTIME_ERROR"]
HISTORY_RUNTIME_ERROR: Final[Any] = _CAPTURES["HISTORY_RUNTIME_ERROR"]
PROMPT_SLOW: Final[Any] = _CAPTURES["PROMPT_SLOW"]
WS_INTERRUPTED: Final[Any] = _CAPTURES["WS_INTERRUPTED"]
HISTORY_INTERRUPTED: Final[Any] = _CAPTURES["HISTORY_INTERRUPTED"]
PROMPT_UNKNOWN_NODE: Final[Any] = _CAPTURES["PROMPT_UNKNOWN_NODE"]
PROMPT_MISSING_INPUT: Final[Any] = _CAPTURES["PROMPT_MISSING_INPUT"]
PROMPT_MISSING_MODEL: Final[Any] = _CAPTURES["PROMPT_MISSING_MODEL"]
PROMPT_MALFORMED_TEXT: Final[Any] = _CAPTURES["PROMPT_MALFORMED_TEXT"]
WS_PROGRESS: Final[Any] = _CAPTURES["WS_PROGRESS"]
QUEUE_RUNNING: Final[Any] = _CAPTURES["QUEUE_RUNNING"]
QUEUE_IDLE: Final[Any] = _CAPTURES["QUEUE_IDLE"]
PROMPT_WS_IMAGE: Final[Any] = _CAPTURES["PROMPT_WS_IMAGE"]
WS_BINARY: Final[Any] = _CAPTURES["WS_BINARY"]
HISTORY_WS_IMAGE: Final[Any] = _CAPTURES["HISTORY_WS_IMAGE"]
