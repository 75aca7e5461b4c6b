"""A fake Replicate API over real loopback HTTP (trio + h11), speaking protocols.md §2 shapes.

Scenarios are knobs on the FakeReplicate object, set before or during a test:

- ``polls_before_done``: GETs answered ``processing`` before the terminal status;
- ``fail_with``: the prediction ends ``failed`` with this error text instead of succeeding;
- ``never_finish``: the prediction stays ``processing`` (slow prediction, for cancellation);
- ``processing_on_create``: the create answers ``processing`` with a ``0/4 [`` progress line
  (a warm model that picks the prediction up at once), so the client reports progress before
  its first poll: a test can wait for that instead of for a span of time;
- ``output_as_list``: ``output`` is ``[url]`` (flux) or a bare URL string;
- ``Prefer: wait[=N]`` on a create is honoured as Replicate does (only on create; N is 1..60,
  60 when absent; anything else is a 422): a prediction done at its first look
  (``polls_before_done`` 0, not ``never_finish``) is answered finished, any other after a real
  hold of N s, unfinished. ``Cancel-After`` must read like ``30s``/``5m``/``1h30m`` or bare
  seconds, at least 5 s (else 422); it is kept on the prediction;
- ``faults[route]``: scripted responses served first, in order, for a route
  (``create``, ``get``, ``cancel``, ``output``, ``list``) — e.g. a 429 with Retry-After,
  or ``DROP`` to close the connection without an answer.

Every request is recorded in ``requests`` (method, path, headers, JSON body).
"""

from __future__ import annotations

import itertools
import json
import re
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import h11
import trio

from tests.fakes.http11 import read_request, send

TOKEN = "r8_test_token"
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81"
    b"\x84\x00\x00\x00\x00IEND\xaeB`\x82"
)


@attrs.frozen
class Reply:
    status: int
    body: Any = None  # dict -> JSON, bytes -> raw
    headers: dict[str, str] = attrs.field(factory=dict)
    # A held create: answered after this many seconds with the prediction as it is then.
    hold_s: float = 0.0
    pid: str | None = None


DROP = Reply(0)
"""Scripted reply that closes the connection without answering (a dropped request)."""


@attrs.frozen
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@attrs.define
class Prediction:
    id: str
    model: str
    version: str
    input: dict[str, Any]
    status: str = "starting"
    polls: int = 0
    error: str | None = None
    cancel_after_s: int | None = None


@attrs.define
class FakeReplicate:
    base_url: str = ""
    token: str = TOKEN
    polls_before_done: int = 0
    fail_with: str | None = None
    never_finish: bool = False
    output_as_list: bool = True
    processing_on_create: bool = False
    # GET /v1/models/{owner}/{name} answers 404 for these ("owner/name").
    missing_models: set[str] = attrs.field(factory=set)
    faults: dict[str, deque[Reply]] = attrs.field(factory=lambda: defaultdict(deque))
    requests: list[Recorded] = attrs.field(factory=list)
    predictions: dict[str, Prediction] = attrs.field(factory=dict)
    _ids: itertools.count[int] = attrs.field(factory=itertools.count)

    def script(self, route: str, *replies: Reply) -> None:
        self.faults[route].extend(replies)

    def hits(self, method: str, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # -- routing ------------------------------------------------------------------------

    def route(self, method: str, path: str, headers: dict[str, str], body: Any) -> Reply:
        self.requests.append(Recorded(method, path, headers, body))
        name, args = self._match(method, path)
        if name is None:
            return _problem(404, "Not found")
        if name != "output" and headers.get("authorization") != f"Bearer {self.token}":
            return _problem(401, "You did not pass a valid authentication token")
        if self.faults[name]:
            return self.faults[name].popleft()
        handler: Callable[..., Reply] = getattr(self, f"_on_{name}")
        return handler(*args, headers=headers, body=body)

    def _match(self, method: str, path: str) -> tuple[str | None, tuple[str, ...]]:
        parts = path.strip("/").split("/")
        if method == "GET" and parts[:1] == ["files"]:
            return "output", (parts[1],)
        if parts[:1] != ["v1"]:
            return None, ()
        rest = parts[1:]
        if method == "POST" and len(rest) == 4 and rest[0] == "models" and rest[3] == "predictions":
            return "create", (f"{rest[1]}/{rest[2]}",)
        if method == "POST" and rest == ["predictions"]:
            return "create", ("",)
        if method == "GET" and rest == ["predictions"]:
            return "list", ()
        if method == "GET" and len(rest) == 3 and rest[0] == "models":
            return "model", (f"{rest[1]}/{rest[2]}",)
        if method == "GET" and len(rest) == 2 and rest[0] == "predictions":
            return "get", (rest[1],)
        if method == "POST" and len(rest) == 3 and rest[0] == "predictions" and rest[2] == "cancel":
            return "cancel", (rest[1],)
        return None, ()

    def _on_create(self, model: str, *, headers: dict[str, str], body: Any) -> Reply:
        if not isinstance(body, dict) or "input" not in body:
            return _problem(422, "input is required")
        if model:
            allowed = {"input", "webhook", "webhook_events_filter"}
            if set(body) - allowed:
                return _problem(422, f"unexpected keys {sorted(set(body) - allowed)}")
            version = "hidden"
        else:
            version = str(body.get("version", ""))
            if not version:
                return _problem(422, "version is required")
            model = version.split(":", 1)[0] if "/" in version else "some/model"
        wait_s: int | None = None
        if "prefer" in headers:
            wait = PREFER_WAIT.match(headers["prefer"])
            if wait is None or int(wait["n"] or 60) > 60:
                return _problem(422, f"invalid Prefer header {headers['prefer']!r}")
            wait_s = int(wait["n"] or 60)
        cancel_after_s = None
        if "cancel-after" in headers:
            cancel_after_s = _duration_s(headers["cancel-after"])
            if cancel_after_s is None or cancel_after_s < 5:
                return _problem(422, f"invalid Cancel-After {headers['cancel-after']!r}")
        pid = f"pred{next(self._ids):04d}"
        self.predictions[pid] = Prediction(
            pid, model, version, body["input"], cancel_after_s=cancel_after_s
        )
        pred = self.predictions[pid]
        if wait_s is not None:
            if self.polls_before_done == 0 and not self.never_finish:
                self._advance(pred, finish_now=True)
                return Reply(201, self._object(pred))
            pred.status = "processing" if self.processing_on_create else "starting"
            return Reply(201, hold_s=wait_s, pid=pid)
        if self.processing_on_create:
            pred.status = "processing"
        return Reply(201, self._object(pred))

    def _on_get(self, pid: str, *, headers: dict[str, str], body: Any) -> Reply:
        pred = self.predictions.get(pid)
        if pred is None:
            return _problem(404, "Prediction not found")
        self._advance(pred)
        return Reply(200, self._object(pred))

    def _on_cancel(self, pid: str, *, headers: dict[str, str], body: Any) -> Reply:
        pred = self.predictions.get(pid)
        if pred is None:
            return _problem(404, "Prediction not found")
        if pred.status not in ("succeeded", "failed", "canceled", "aborted"):
            pred.status = "canceled"
        return Reply(200, self._object(pred))

    def _on_model(self, model: str, *, headers: dict[str, str], body: Any) -> Reply:
        if model in self.missing_models:
            return _problem(404, "Not found")
        owner, name = model.split("/", 1)
        return Reply(200, {"owner": owner, "name": name, "url": f"https://replicate.com/{model}"})

    def _on_list(self, *, headers: dict[str, str], body: Any) -> Reply:
        results = [self._object(p) for p in self.predictions.values()]
        return Reply(200, {"next": None, "previous": None, "results": results})

    def _on_output(self, name: str, *, headers: dict[str, str], body: Any) -> Reply:
        return Reply(200, PNG, {"content-type": "image/png"})

    def _advance(self, pred: Prediction, *, finish_now: bool = False) -> None:
        if pred.status in ("succeeded", "failed", "canceled", "aborted"):
            return
        pred.polls += 1
        if self.never_finish or (not finish_now and pred.polls <= self.polls_before_done):
            pred.status = "processing"
            return
        if self.fail_with is not None:
            pred.status, pred.error = "failed", self.fail_with
        else:
            pred.status = "succeeded"

    def _object(self, pred: Prediction) -> dict[str, Any]:
        done = pred.status == "succeeded"
        url = f"{self.base_url}/files/{pred.id}-out-0.png"
        output: Any = ([url] if self.output_as_list else url) if done else None
        return {
            "id": pred.id,
            "model": pred.model,
            "version": pred.version,
            "input": pred.input,
            "logs": f"{pred.polls}/4 [00:00<00:00]" if pred.status == "processing" else "",
            "output": output,
            "error": pred.error,
            "status": pred.status,
            "source": "api",
            "data_removed": False,
            "created_at": "2025-01-01T00:00:00.000Z",
            "metrics": {"predict_time": 0.84, "total_time": 0.9} if done else {},
            "urls": {
                "get": f"{self.base_url}/v1/predictions/{pred.id}",
                "cancel": f"{self.base_url}/v1/predictions/{pred.id}/cancel",
                "web": f"https://replicate.com/p/{pred.id}",
            },
        }

    # -- HTTP ---------------------------------------------------------------------------

    async def serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                got = await read_request(conn, stream)
                if got is None:
                    return
                event, raw = got
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                body = json.loads(raw) if raw else None
                reply = self.route(event.method.decode(), event.target.decode(), headers, body)
                if reply.status == 0:
                    return
                if reply.hold_s:
                    await trio.sleep(reply.hold_s)
                    assert reply.pid is not None
                    reply = Reply(reply.status, self._object(self.predictions[reply.pid]))
                await _send(conn, stream, reply)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()


PREFER_WAIT = re.compile(r"^wait(=(?P<n>[1-9][0-9]?))?$")  # and N <= 60
CANCEL_AFTER = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")


def _duration_s(value: str) -> int | None:
    """Cancel-After's ``1h30m``/``5m``/``30s`` or bare seconds; None if malformed."""
    if value.isdigit():
        return int(value)
    match = CANCEL_AFTER.match(value)
    if match is None or not any(match.groups()):
        return None
    h, m, sec = (int(x or 0) for x in match.groups())
    return h * 3600 + m * 60 + sec


def _problem(status: int, detail: str) -> Reply:
    return Reply(
        status,
        {"title": "error", "status": status, "detail": detail},
        {"content-type": "application/problem+json"},
    )


async def _send(conn: h11.Connection, stream: trio.SocketStream, reply: Reply) -> None:
    if isinstance(reply.body, bytes):
        payload = reply.body
        headers = {"content-type": "application/octet-stream", **reply.headers}
    else:
        payload = json.dumps(reply.body).encode() if reply.body is not None else b""
        headers = {"content-type": "application/json", **reply.headers}
    headers["content-length"] = str(len(payload))
    await send(
        conn,
        stream,
        h11.Response(status_code=reply.status, headers=list(headers.items())),
        h11.Data(data=payload),
        h11.EndOfMessage(),
    )


@asynccontextmanager
async def fake_replicate() -> AsyncIterator[FakeReplicate]:
    """Serve a FakeReplicate on 127.0.0.1:<free port>; ``base_url`` is set on it."""
    fake = FakeReplicate()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, fake.serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        fake.base_url = f"http://127.0.0.1:{port}"
        try:
            yield fake
        finally:
            nursery.cancel_scope.cancel()
