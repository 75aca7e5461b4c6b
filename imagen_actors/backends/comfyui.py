"""ComfyUI adapter: one adapter, models as workflow data (protocols.md section 1).

One ``generate``: render the workflow template, open ``/ws?clientId=<uuid4 hex>``, POST
/prompt with that ``client_id``, follow the run on the socket (``progress`` frames drive
the progress callback; ``execution_success`` / ``executing`` with ``node: null`` end it;
``execution_error`` / ``execution_interrupted`` fail it), read ``/history/{prompt_id}`` for
the SaveImage output and download it from ``/view``. If the socket cannot be opened or
drops, ``/history/{prompt_id}`` is polled instead (it answers 200 ``{}`` until the run is
done). The whole call runs under ``timeout_s``.

Errors: a 400 from POST /prompt (validation: unknown node, missing input, model file not
installed) is permanent and names node id, class_type, input and details; connection
failures, 5xx and timeouts are transient; ``execution_error`` is permanent unless it looks
like running out of memory. Leaving ``generate`` early (trio.Cancelled, the timeout, an
HTTP error) once a prompt id is known sends ``POST /interrupt {"prompt_id"}`` and
``POST /queue {"delete": [id]}`` under a shielded short deadline, then re-raises.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Final

import attrs
import httpx
import msgspec
import trio
from httpx_ws import AsyncWebSocketSession, HTTPXWSException, aconnect_ws
from wsproto.events import TextMessage

from imagen_actors.backends.base import (
    BackendStatus,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    adapter_config,
)
from imagen_actors.backends.comfyui_workflow import (
    Workflow,
    execution_error_message,
    interrupted_message,
    is_transient_failure,
    load_workflow,
    validation_message,
)
from imagen_actors.errors import GenerationError
from imagen_actors.templating import TemplateError

log = logging.getLogger("imagen_actors.backends.comfyui")

INTERRUPT_TIMEOUT_S: Final = 5.0
# After execution_success, wait this long for the closing `executing {node: null}`
# (sent once history is written; ~240 ms later on a real server).
DONE_GRACE_S: Final = 2.0


class ComfyUIConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str = "http://127.0.0.1:8188"
    workflow: str = "flux1-schnell"
    timeout_s: float = 300.0
    default_steps: int | None = None
    cfg: float | None = None
    model: str | None = None
    poll_interval_s: float = 0.5  # /history polling when the websocket is unavailable
    silence_check_s: float = 10.0  # websocket quiet this long: look at /history anyway


@attrs.define
class _Run:
    prompt_id: str | None = None
    finished: bool = False  # the server no longer runs it (done, failed, interrupted)


def _refused(exc: BaseException | None) -> bool:
    """Whether a ConnectionRefusedError sits anywhere in the cause chain or groups."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConnectionRefusedError):
            return True
        if isinstance(exc, BaseExceptionGroup) and any(_refused(e) for e in exc.exceptions):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _reason(exc: BaseException) -> str:
    if _refused(exc):
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__


class ComfyUIBackend:
    type = "comfyui"

    def __init__(self, name: str, cfg: ComfyUIConfig, workflow: Workflow) -> None:
        self.name = name
        self._cfg = cfg
        self._workflow = workflow
        self._url = cfg.url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self._url, timeout=httpx.Timeout(60.0, connect=10.0)
        )
        self.model = cfg.model or workflow.meta.model or workflow.name

    def _error(self, message: str, error_class: str) -> GenerationError:
        return GenerationError(
            f"comfyui {self.name}: {message}",
            error_class="transient" if error_class == "transient" else "permanent",
        )

    # -- request building -------------------------------------------------------------

    def render(self, request: GenerationRequest) -> tuple[dict[str, Any], dict[str, object]]:
        wf, cfg = self._workflow, self._cfg
        values: dict[str, object] = {
            "prompt": request.prompt,
            "negative": request.negative_prompt or "",
            "seed": request.seed,
            "width": request.width,
            "height": request.height,
            "steps": request.steps or cfg.default_steps or wf.meta.steps,
            "cfg": cfg.cfg if cfg.cfg is not None else wf.meta.cfg,
        }
        try:
            return wf.render(values), values
        except TemplateError as exc:
            raise self._error(
                f"workflow {wf.name}: {exc} (set default_steps / cfg in the config)", "permanent"
            ) from exc

    # -- generate ---------------------------------------------------------------------

    async def generate(
        self, request: GenerationRequest, progress: ProgressCallback
    ) -> GenerationResult:
        started = time.perf_counter()
        graph, values = self.render(request)
        run = _Run()
        try:
            with trio.fail_after(self._cfg.timeout_s):
                ref = await self._execute(graph, uuid.uuid4().hex, run, progress)
                image, mime = await self._download(ref)
        except trio.TooSlowError:
            raise self._error(
                f"no result within timeout_s={self._cfg.timeout_s:g}s "
                f"(prompt {run.prompt_id or 'not queued'})",
                "transient",
            ) from None
        finally:
            if run.prompt_id is not None and not run.finished:
                await self._interrupt(run.prompt_id)
        return GenerationResult(
            image=image,
            mime=mime,
            model=self.model,
            seed=request.seed,
            latency_ms=int((time.perf_counter() - started) * 1000),
            metadata={
                "workflow": self._workflow.name,
                "prompt_id": run.prompt_id,
                "steps": values["steps"],
                "cfg": values["cfg"],
                "url": self._url,
            },
        )

    async def _execute(
        self, graph: dict[str, Any], client_id: str, run: _Run, progress: ProgressCallback
    ) -> dict[str, Any]:
        """Queue the graph, wait for it to end; the image reference from its history."""
        failure: GenerationError | None = None
        try:
            async with aconnect_ws(
                "/ws",
                self._client,
                params={"clientId": client_id},
                session_class=AsyncWebSocketSession,
            ) as ws:
                try:
                    run.prompt_id = await self._submit(graph, client_id)
                    await self._follow(ws, run, progress)
                except GenerationError as exc:
                    failure = exc
        except* (HTTPXWSException, httpx.HTTPError, OSError) as group:
            log.info(
                "comfyui %s: websocket unavailable (%s); polling /history",
                self.name,
                "; ".join(_reason(e) for e in group.exceptions),
            )
        if failure is not None:
            raise failure
        if run.prompt_id is None:
            run.prompt_id = await self._submit(graph, client_id)
        entry = await self._wait_history(run)
        run.finished = True
        return self._image_ref(entry)

    async def _submit(self, graph: dict[str, Any], client_id: str) -> str:
        try:
            resp = await self._client.post(
                "/prompt", json={"prompt": graph, "client_id": client_id}
            )
        except httpx.HTTPError as exc:
            raise self._error(f"POST /prompt: {self._url}: {_reason(exc)}", "transient") from exc
        body = _json(resp)
        if (
            resp.status_code == 200
            and isinstance(body, dict)
            and isinstance(body.get("prompt_id"), str)
        ):
            if body.get("node_errors"):
                log.warning(
                    "comfyui %s: some outputs were dropped: %s", self.name, validation_message(body)
                )
            prompt_id: str = body["prompt_id"]
            return prompt_id
        if resp.status_code == 400:
            raise self._error(validation_message(body), "permanent")
        detail = resp.text.strip().replace("\n", " ")[:300] or resp.reason_phrase
        if resp.status_code >= 500:
            raise self._error(f"POST /prompt: HTTP {resp.status_code}: {detail}", "transient")
        raise self._error(
            f"POST /prompt: HTTP {resp.status_code}: {detail or 'no body'}", "permanent"
        )

    async def _follow(
        self, ws: AsyncWebSocketSession, run: _Run, progress: ProgressCallback
    ) -> None:
        """Read frames until our prompt ends; return quietly if the socket fails."""
        prompt_id = run.prompt_id
        succeeded = False
        try:
            while True:
                wait = DONE_GRACE_S if succeeded else self._cfg.silence_check_s
                frame: dict[str, Any] | None = None
                with trio.move_on_after(wait) as scope:
                    frame = await _next_frame(ws)
                if scope.cancelled_caught:
                    # Quiet socket: done already, or events are not reaching us.
                    if succeeded or await self._history_entry(str(prompt_id)) is not None:
                        return
                    continue
                if frame is None:
                    continue
                kind, data = frame.get("type"), frame.get("data")
                if not isinstance(data, dict) or data.get("prompt_id", prompt_id) != prompt_id:
                    continue
                if kind == "progress":
                    value, top = data.get("value"), data.get("max")
                    if isinstance(value, int | float) and isinstance(top, int | float):
                        progress(int(value), int(top))
                elif kind == "execution_success":
                    succeeded = True
                elif kind == "executing" and data.get("node") is None:
                    return
                elif kind in ("execution_error", "execution_interrupted"):
                    run.finished = True
                    raise self._run_failure(kind, data)
        except (HTTPXWSException, OSError) as exc:
            log.info(
                "comfyui %s: websocket dropped (%s); polling /history", self.name, _reason(exc)
            )

    def _run_failure(self, kind: str, data: dict[str, Any]) -> GenerationError:
        if kind == "execution_interrupted":
            return self._error(interrupted_message(data), "transient")
        return self._error(
            execution_error_message(data),
            "transient" if is_transient_failure(data) else "permanent",
        )

    async def _history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        try:
            resp = await self._client.get(f"/history/{prompt_id}")
        except httpx.HTTPError as exc:
            raise self._error(f"GET /history: {self._url}: {_reason(exc)}", "transient") from exc
        if resp.status_code >= 400:
            raise self._error(
                f"GET /history/{prompt_id}: HTTP {resp.status_code}",
                "transient" if resp.status_code >= 500 else "permanent",
            )
        body = _json(resp)
        entry = body.get(prompt_id) if isinstance(body, dict) else None
        return entry if isinstance(entry, dict) else None

    async def _wait_history(self, run: _Run) -> dict[str, Any]:
        """Poll until the history entry exists (``{}`` means not finished yet)."""
        prompt_id = str(run.prompt_id)
        delay = min(0.05, self._cfg.poll_interval_s)
        while (entry := await self._history_entry(prompt_id)) is None:
            await trio.sleep(delay)
            delay = min(delay * 2, self._cfg.poll_interval_s)
        status = entry.get("status")
        if isinstance(status, dict) and status.get("status_str") == "error":
            run.finished = True
            for message in status.get("messages") or []:
                if not (
                    isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict)
                ):
                    continue
                event, data = message
                if event in ("execution_error", "execution_interrupted"):
                    raise self._run_failure(event, data)
            raise self._error(f"prompt {prompt_id} ended with an error", "permanent")
        return entry

    def _image_ref(self, entry: dict[str, Any]) -> dict[str, Any]:
        outputs = entry.get("outputs")
        images: list[dict[str, Any]] = []
        if isinstance(outputs, dict):
            for output in outputs.values():
                if isinstance(output, dict):
                    images += [
                        i
                        for i in output.get("images") or []
                        if isinstance(i, dict) and isinstance(i.get("filename"), str)
                    ]
        images.sort(key=lambda i: i.get("type") != "output")
        if not images:
            raise self._error(
                f"workflow {self._workflow.name} produced no image "
                "(does it end in a SaveImage node?)",
                "permanent",
            )
        return images[0]

    async def _download(self, ref: dict[str, Any]) -> tuple[bytes, str]:
        params = {
            "filename": ref["filename"],
            "subfolder": ref.get("subfolder") or "",
            "type": ref.get("type") or "output",
        }
        try:
            resp = await self._client.get("/view", params=params)
        except httpx.HTTPError as exc:
            raise self._error(f"GET /view: {self._url}: {_reason(exc)}", "transient") from exc
        if resp.status_code != 200:
            raise self._error(f"GET /view {ref['filename']}: HTTP {resp.status_code}", "transient")
        mime = resp.headers.get("content-type", "").split(";")[0].strip()
        return resp.content, mime if mime.startswith("image/") else "image/png"

    async def _interrupt(self, prompt_id: str) -> None:
        """Stop our prompt if it runs and drop it if it waits; never raises."""
        with trio.move_on_after(INTERRUPT_TIMEOUT_S) as scope:
            scope.shield = True
            try:
                await self._client.post("/interrupt", json={"prompt_id": prompt_id})
                await self._client.post("/queue", json={"delete": [prompt_id]})
            except httpx.HTTPError as exc:
                log.warning(
                    "comfyui %s: could not interrupt %s: %s", self.name, prompt_id, _reason(exc)
                )

    # -- health / lifecycle -----------------------------------------------------------

    async def check(self) -> BackendStatus:
        try:
            resp = await self._client.get("/system_stats", timeout=5.0)
        except httpx.HTTPError as exc:
            return BackendStatus(False, f"unreachable ({self._url}: {_reason(exc)})")
        if resp.status_code != 200 or not isinstance(_json(resp), dict):
            return BackendStatus(False, f"unhealthy ({self._url}: HTTP {resp.status_code})")
        return BackendStatus(True, "ok")

    async def aclose(self) -> None:
        await self._client.aclose()


async def _next_frame(ws: AsyncWebSocketSession) -> dict[str, Any] | None:
    """The next text frame as a JSON object; None for binary previews and junk."""
    event = await ws.receive()
    if not isinstance(event, TextMessage):
        return None
    try:
        frame = json.loads(event.data)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def build(name: str, block: dict[str, Any]) -> ComfyUIBackend:
    cfg = adapter_config(block, ComfyUIConfig, instance=name)
    return ComfyUIBackend(name, cfg, load_workflow(cfg.workflow, instance=name))
