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

import logging
import time
import uuid
from typing import Annotated, Any, Final

import attrs
import httpx
import msgspec
import trio
from httpx_ws import AsyncWebSocketSession, HTTPXWSException, aconnect_ws

from imagen_actors.backends.base import (
    BackendStatus,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    adapter_config,
)
from imagen_actors.backends.comfyui_messages import (
    failure_in_history,
    first_image,
    json_or_none,
    next_frame,
)
from imagen_actors.backends.comfyui_templating import TemplateError
from imagen_actors.backends.comfyui_workflow import (
    Workflow,
    execution_error_message,
    interrupted_message,
    is_transient_failure,
    load_workflow,
    network_reason,
    validation_message,
)
from imagen_actors.core.errors import ConfigError, GenerationError

log = logging.getLogger("imagen_actors.backends.comfyui")

INTERRUPT_TIMEOUT_S: Final = 5.0
# After execution_success, wait this long for the closing `executing {node: null}`
# (sent once history is written; ~240 ms later on a real server).
DONE_GRACE_S: Final = 2.0


Seconds = Annotated[float, msgspec.Meta(gt=0)]


class ComfyUIConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str = "http://127.0.0.1:8188"
    workflow: str = "flux1-schnell"  # bundled name or path to an API-format JSON file
    timeout_s: Seconds = 300.0
    default_steps: Annotated[int, msgspec.Meta(ge=1)] | None = None  # else the workflow's
    cfg: float | None = None  # else the workflow's
    model: str | None = None  # label in results; else the workflow's, else its name
    poll_interval_s: Seconds = 0.5  # /history polling when the websocket is unavailable
    silence_check_s: Seconds = 10.0  # websocket quiet this long: look at /history anyway


@attrs.define
class _Run:
    prompt_id: str | None = None
    pending_id: str | None = None  # the id we asked for while POST /prompt is in flight
    finished: bool = False  # the server no longer runs it (done, failed, interrupted)


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
            hint = ""
            if values["steps"] is None or values["cfg"] is None:
                hint = f" (set default_steps / cfg under backends.{self.name})"
            raise self._error(f"workflow {wf.name}: {exc}{hint}", "permanent") from exc

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
            target = run.prompt_id or run.pending_id
            if target is not None and not run.finished:
                await self._interrupt(target)
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
                    run.prompt_id = await self._submit(graph, client_id, run)
                    await self._follow(ws, run, progress)
                except GenerationError as exc:
                    failure = exc
        except* (HTTPXWSException, httpx.HTTPError, OSError) as group:
            log.info(
                "comfyui %s: websocket unavailable (%s); polling /history",
                self.name,
                "; ".join(network_reason(e) for e in group.exceptions),
            )
        if failure is not None:
            raise failure
        if run.prompt_id is None:
            run.prompt_id = await self._submit(graph, client_id, run)
        entry = await self._wait_history(run)
        run.finished = True
        return self._image_ref(entry)

    async def _submit(self, graph: dict[str, Any], client_id: str, run: _Run) -> str:
        # Servers since 2025 queue under a prompt_id we choose; older ones make their own
        # (the answer's id is used either way). Asking for one lets a cancel that lands
        # while this POST is in flight still name the prompt to interrupt.
        run.pending_id = str(uuid.uuid4())
        payload = {"prompt": graph, "client_id": client_id, "prompt_id": run.pending_id}
        try:
            resp = await self._client.post("/prompt", json=payload)
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.ConnectError):
                run.pending_id = None  # nothing was sent
            raise self._error(
                f"POST /prompt: {self._url}: {network_reason(exc)}", "transient"
            ) from exc
        run.pending_id = None
        body = json_or_none(resp)
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
                    frame = await next_frame(ws)
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
                "comfyui %s: websocket dropped (%s); polling /history",
                self.name,
                network_reason(exc),
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
            raise self._error(
                f"GET /history: {self._url}: {network_reason(exc)}", "transient"
            ) from exc
        if resp.status_code >= 400:
            raise self._error(
                f"GET /history/{prompt_id}: HTTP {resp.status_code}",
                "transient" if resp.status_code >= 500 else "permanent",
            )
        body = json_or_none(resp)
        entry = body.get(prompt_id) if isinstance(body, dict) else None
        return entry if isinstance(entry, dict) else None

    async def _wait_history(self, run: _Run) -> dict[str, Any]:
        """Poll until the history entry exists (``{}`` means not finished yet)."""
        prompt_id = str(run.prompt_id)
        delay = min(0.05, self._cfg.poll_interval_s)
        while (entry := await self._history_entry(prompt_id)) is None:
            await trio.sleep(delay)
            delay = min(delay * 2, self._cfg.poll_interval_s)
        failure = failure_in_history(entry)
        if failure is not None:
            run.finished = True
            event, data = failure
            if event:
                raise self._run_failure(event, data)
            raise self._error(f"prompt {prompt_id} ended with an error", "permanent")
        return entry

    def _image_ref(self, entry: dict[str, Any]) -> dict[str, Any]:
        image = first_image(entry)
        if image is None:
            raise self._error(
                f"workflow {self._workflow.name} produced no image "
                "(does it end in a SaveImage node?)",
                "permanent",
            )
        return image

    async def _download(self, ref: dict[str, Any]) -> tuple[bytes, str]:
        params = {
            "filename": ref["filename"],
            "subfolder": ref.get("subfolder") or "",
            "type": ref.get("type") or "output",
        }
        try:
            resp = await self._client.get("/view", params=params)
        except httpx.HTTPError as exc:
            raise self._error(
                f"GET /view: {self._url}: {network_reason(exc)}", "transient"
            ) from exc
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
                    "comfyui %s: could not interrupt %s: %s",
                    self.name,
                    prompt_id,
                    network_reason(exc),
                )

    # -- health / lifecycle -----------------------------------------------------------

    async def check(self) -> BackendStatus:
        try:
            resp = await self._client.get("/system_stats", timeout=5.0)
        except httpx.HTTPError as exc:
            return BackendStatus(False, f"unreachable ({self._url}: {network_reason(exc)})")
        if resp.status_code != 200 or not isinstance(json_or_none(resp), dict):
            return BackendStatus(False, f"unhealthy ({self._url}: HTTP {resp.status_code})")
        return BackendStatus(True, "ok")

    async def aclose(self) -> None:
        await self._client.aclose()


def build(name: str, block: dict[str, Any]) -> ComfyUIBackend:
    cfg = adapter_config(block, ComfyUIConfig, instance=name)
    if not cfg.url.startswith(("http://", "https://")):
        raise ConfigError(
            f"backends.{name}.url: {cfg.url!r} must start with http:// or https:// "
            "(e.g. http://127.0.0.1:8188; the websocket URL is derived from it)"
        )
    return ComfyUIBackend(name, cfg, load_workflow(cfg.workflow, instance=name))
