"""ComfyUI adapter: one adapter, models as workflow data (docs/backends.md, protocols.md 1).

One ``generate``: render the workflow, open ``/ws?clientId=<uuid4 hex>``, POST /prompt with
that ``client_id``, follow the run on the socket (``progress`` drives the callback; the
closing ``executing {node: null}`` ends it; ``execution_error``/``_interrupted`` fail it),
then take the image of the workflow's output node only: from ``/history`` + ``/view``, or,
for SaveImageWebsocket, the binary frame it sent while executing. Without a socket,
``/history`` is polled. Every ``queue_check_s`` GET /queue (then /history) must still know
the prompt: gone twice in a row means cleared or restarted (transient, at once). All under
``timeout_s``; leaving early cancels the prompt (``comfyui_http.cancel``: delete, then
interrupt). Errors: validation 400s and a 200 whose ``node_errors`` drop our output node
are permanent; network, 5xx, timeouts, a vanished prompt are transient; ``execution_error``
is permanent unless it looks like running out of memory.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Annotated, Any, Final

import httpx
import msgspec
import trio
from httpx_ws import AsyncWebSocketSession, HTTPXWSException, aconnect_ws

from imagen_actors.backends import comfyui_http
from imagen_actors.backends.base import (
    BackendStatus,
    CreatedCallback,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    adapter_config,
    trust_env_for,
)
from imagen_actors.backends.comfyui_http import UNAVAILABLE, Run
from imagen_actors.backends.comfyui_messages import (
    binary_image,
    dropped_outputs,
    failure_in_history,
    first_image,
    json_or_none,
    next_frame,
)
from imagen_actors.backends.comfyui_preflight import check_server, rejection_class
from imagen_actors.backends.comfyui_templating import TemplateError
from imagen_actors.backends.comfyui_workflow import (
    Workflow,
    dropped_output_message,
    execution_error_message,
    input_value,
    interrupted_message,
    is_transient_failure,
    load_workflow,
    network_reason,
    validation_message,
    version_hint,
)
from imagen_actors.core.errors import ConfigError, ErrorClass, GenerationError

log = logging.getLogger("imagen_actors.backends.comfyui")

# After execution_success, wait this long for the closing `executing {node: null}`
# (sent once history is written; ~240 ms later on a real server).
DONE_GRACE_S: Final = 2.0
WS_OUTPUT: Final = "SaveImageWebsocket"


Seconds = Annotated[float, msgspec.Meta(gt=0)]


class ComfyUIConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str = "http://127.0.0.1:8188"
    workflow: str = "flux1-schnell"  # bundled name or path to an API-format JSON file
    timeout_s: Seconds = 300.0
    default_steps: Annotated[int, msgspec.Meta(ge=1)] | None = None  # else the workflow's
    cfg: float | None = None  # else the workflow's
    model: str | None = None  # label in results; else the workflow's, else its name
    poll_interval_s: Seconds = 0.5  # /history polling when the websocket is unavailable
    queue_check_s: Seconds = 3.0  # while waiting: is the prompt still queued, or done?


class ComfyUIBackend:
    type = "comfyui"

    def __init__(self, name: str, cfg: ComfyUIConfig, workflow: Workflow) -> None:
        self.name = name
        self._cfg = cfg
        self._workflow = workflow
        self._url = cfg.url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self._url,
            timeout=httpx.Timeout(60.0, connect=10.0),
            trust_env=trust_env_for(self._url),
        )
        self.model = cfg.model or workflow.meta.model or workflow.name
        # SaveImageWebsocket sends the image on the socket and keeps no file in ComfyUI.
        self._ws_output = workflow.graph[workflow.output_node]["class_type"] == WS_OUTPUT

    def _error(self, message: str, error_class: ErrorClass) -> GenerationError:
        return comfyui_http.error(message, error_class)

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
        self,
        request: GenerationRequest,
        progress: ProgressCallback,
        *,
        created: CreatedCallback | None = None,  # nothing external to resume
    ) -> GenerationResult:
        started = time.perf_counter()
        graph, _ = self.render(request)
        if request.steps is not None and input_value(graph, "steps") is None:
            log.warning(
                "comfyui %s: workflow %s has no steps input; the job's steps=%d are not used",
                self.name,
                self._workflow.name,
                request.steps,
            )
        run = Run()
        try:
            with trio.fail_after(self._cfg.timeout_s):
                ref = await self._execute(graph, uuid.uuid4().hex, run, progress)
                image, mime = run.sent or await comfyui_http.download(self._client, ref)
        except trio.TooSlowError:
            raise self._error(
                f"no result within timeout_s={self._cfg.timeout_s:g}s "
                f"(prompt {run.prompt_id or 'not queued'})",
                "transient",
            ) from None
        finally:
            target = run.prompt_id or run.pending_id
            if target is not None and not run.finished:
                await comfyui_http.cancel(
                    self._client, target, answered=run.prompt_id is not None, instance=self.name
                )
        return GenerationResult(
            image=image,
            mime=mime,
            model=self.model,
            seed=request.seed,
            latency_ms=int((time.perf_counter() - started) * 1000),
            metadata={
                "workflow": self._workflow.name,
                "prompt_id": run.prompt_id,
                # What ran: only inputs the rendered graph has (no sampler, no steps).
                **{k: v for k in ("steps", "cfg") if (v := input_value(graph, k)) is not None},
                "url": self._url,
            },
        )

    async def _execute(
        self, graph: dict[str, Any], client_id: str, run: Run, progress: ProgressCallback
    ) -> dict[str, Any]:
        """Queue the graph, wait for it to end; the image reference from its history.

        For a SaveImageWebsocket output the image is in ``run.sent`` and ``{}`` is returned.
        """
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
        if not self._ws_output:
            return self._image_ref(entry)
        if run.sent is None:
            raise self._error(
                f"node {self._workflow.output_node} ({WS_OUTPUT}) sends its image only on the "
                "websocket, and none reached us (the socket was unavailable or dropped); the "
                "run finished without a copy to fetch, so it must run again",
                "transient",
            )
        return {}

    async def _submit(self, graph: dict[str, Any], client_id: str, run: Run) -> str:
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
                f"POST /prompt: {self._url}: {network_reason(exc)}", "dependency"
            ) from exc
        run.pending_id = None
        body = json_or_none(resp)
        if (
            resp.status_code == 200
            and isinstance(body, dict)
            and isinstance(body.get("prompt_id"), str)
        ):
            prompt_id: str = body["prompt_id"]
            if body.get("node_errors"):
                self._check_dropped(body, prompt_id, run)
            return prompt_id
        if resp.status_code == 400:
            raise self._error(
                validation_message(body) + version_hint(self._workflow, body),
                rejection_class(body),
            )
        detail = resp.text.strip().replace("\n", " ")[:300] or resp.reason_phrase
        if resp.status_code >= 500:
            # 502/503/504: a proxy in front says ComfyUI is not there (restarting). Any other
            # 5xx is the server answering, having failed on this prompt: the job's fault.
            kind: ErrorClass = "dependency" if resp.status_code in UNAVAILABLE else "transient"
            raise self._error(f"POST /prompt: HTTP {resp.status_code}: {detail}", kind)
        raise self._error(
            f"POST /prompt: HTTP {resp.status_code}: {detail or 'no body'}", "permanent"
        )

    def _check_dropped(self, body: dict[str, Any], prompt_id: str, run: Run) -> None:
        """A 200 with ``node_errors``: fail if our output node is dropped, else warn."""
        output = self._workflow.output_node
        if output not in dropped_outputs(body):
            log.warning(
                "comfyui %s: prompt %s runs, but other outputs than node %s were dropped: %s",
                self.name,
                prompt_id,
                output,
                validation_message(body),
            )
            return
        run.prompt_id = prompt_id  # queued with the other branches: cancel it on the way out
        raise self._error(dropped_output_message(self._workflow, body), "permanent")

    async def _follow(
        self, ws: AsyncWebSocketSession, run: Run, progress: ProgressCallback
    ) -> None:
        """Read frames until our prompt ends; return quietly if the socket fails."""
        prompt_id, output = run.prompt_id, self._workflow.output_node
        succeeded = False
        until = trio.current_time() + self._cfg.queue_check_s
        try:
            while True:
                frame: dict[str, Any] | bytes | None = None
                with trio.move_on_at(until) as scope:
                    frame = await next_frame(ws)
                if scope.cancelled_caught:
                    # Due a check (or the grace after success is over): still queued? done?
                    if succeeded or await comfyui_http.check_alive(self._client, run) is not None:
                        return
                    until = trio.current_time() + self._cfg.queue_check_s
                    continue
                if isinstance(frame, bytes):
                    self._take_sent(frame, run)
                    continue
                if frame is None:
                    continue
                kind, data = frame.get("type"), frame.get("data")
                if not isinstance(data, dict) or data.get("prompt_id", prompt_id) != prompt_id:
                    continue
                if kind == "executing":
                    run.executing = data.get("node")
                if kind == "progress" and not (self._ws_output and run.executing == output):
                    value, top = data.get("value"), data.get("max")
                    if isinstance(value, int | float) and isinstance(top, int | float):
                        progress(int(value), int(top))
                elif kind == "execution_success":
                    succeeded = True
                    until = trio.current_time() + DONE_GRACE_S
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

    def _take_sent(self, frame: bytes, run: Run) -> None:
        """Keep the first image our SaveImageWebsocket node sends (previews are not ours)."""
        if self._ws_output and run.sent is None and run.executing == self._workflow.output_node:
            run.sent = binary_image(frame)

    def _run_failure(self, kind: str, data: dict[str, Any]) -> GenerationError:
        if kind == "execution_interrupted":
            return self._error(interrupted_message(data), "transient")
        return self._error(
            execution_error_message(data),
            "transient" if is_transient_failure(data) else "permanent",
        )

    async def _wait_history(self, run: Run) -> dict[str, Any]:
        """Poll until the history entry exists (``{}`` means not finished yet)."""
        prompt_id = str(run.prompt_id)
        delay = min(0.05, self._cfg.poll_interval_s)
        check_at = trio.current_time() + self._cfg.queue_check_s
        while (entry := await comfyui_http.history_entry(self._client, prompt_id)) is None:
            if trio.current_time() >= check_at:
                if (entry := await comfyui_http.check_alive(self._client, run)) is not None:
                    break
                check_at = trio.current_time() + self._cfg.queue_check_s
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
        output = self._workflow.output_node
        image = first_image(entry, output)
        if image is None:
            kind = self._workflow.graph[output]["class_type"]
            raise self._error(
                f"workflow {self._workflow.name} produced no image at its output node "
                f"{output} ({kind}); it must be a SaveImage node (or name the one to take "
                'with "_imagen": {"output": "<node id>"})',
                "permanent",
            )
        return image

    # -- health / lifecycle -----------------------------------------------------------

    async def check(self) -> BackendStatus:
        """Reachable, new enough, and ``/object_info`` has every node class and model file
        the workflow names (``comfyui_preflight.check_server``)."""
        return await check_server(self._client, self._url, self._workflow)

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
