from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from imagen_actors.backends.base import BackendStatus, GenerationRequest
from imagen_actors.backends.comfyui import ComfyUIBackend, build
from imagen_actors.core.errors import ConfigError, GenerationError
from tests.fakes.comfyui_server import FakeComfyUI, comfyui_server

OK_ID = "6da6e8d8-d430-4fca-9f4a-bdc98e03aa16"
SLOW_ID = "14d248e1-b5a5-4c51-bf50-c9c0c4a55b90"


def request(prompt: str = "a fox in the snow", **kw: Any) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt, user_prompt=prompt, width=768, height=512, seed=1234, **kw
    )


@asynccontextmanager
async def backend_for(url: str, **block: Any) -> AsyncIterator[ComfyUIBackend]:
    backend = build("local", {"type": "comfyui", "url": url, **block})
    try:
        yield backend
    finally:
        await backend.aclose()


def posted_prompts(server: FakeComfyUI) -> list[Any]:
    return [
        body for method, path, body in server.requests if method == "POST" and path == "/prompt"
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_ok_run_returns_image_and_reports_progress() -> None:
    """A fresh run: progress frames reach the callback, the PNG comes from /view."""
    steps: list[tuple[int, int]] = []
    async with comfyui_server("ok") as server, backend_for(server.url) as backend:
        result = await backend.generate(request(), lambda s, t: steps.append((s, t)))
    assert result.image == server.png and result.image.startswith(b"\x89PNG")
    assert (result.mime, result.model, result.seed) == ("image/png", "flux1-schnell-fp8", 1234)
    assert result.metadata["workflow"] == "flux1-schnell"
    assert result.metadata["prompt_id"] == OK_ID
    assert result.latency_ms >= 0
    assert steps == [(0, 2), (1, 2)]
    [body] = posted_prompts(server)
    assert re.fullmatch(r"[0-9a-f]{32}", body["client_id"])
    assert re.fullmatch(r"[0-9a-f-]{36}", body["prompt_id"])  # ours; the server's answer wins
    ws_paths = [(m, p) for m, p, _ in server.requests if p == "/ws"]
    assert ws_paths == [("GET", "/ws")]
    graph = body["prompt"]
    assert "_imagen" not in graph
    assert graph["6"]["inputs"]["text"] == "a fox in the snow"
    assert graph["33"]["inputs"]["text"] == ""
    assert graph["31"]["inputs"]["seed"] == 1234
    assert graph["31"]["inputs"]["steps"] == 4 and graph["31"]["inputs"]["cfg"] == 1.0
    assert graph["27"]["inputs"] == {"width": 768, "height": 512, "batch_size": 1}


async def test_ok_run_sends_user_text_verbatim_and_config_overrides() -> None:
    """Quotes, braces and ${...} in the prompt arrive untouched; config steps/cfg/model win."""
    text = 'a "quoted" {brace} ${seed} \\ prompt'
    async with (
        comfyui_server("ok") as server,
        backend_for(server.url, default_steps=6, cfg=2.5, model="my-flux") as backend,
    ):
        result = await backend.generate(
            request(text, negative_prompt="no ${cfg}"), lambda s, t: None
        )
    graph = posted_prompts(server)[0]["prompt"]
    assert graph["6"]["inputs"]["text"] == text
    assert graph["33"]["inputs"]["text"] == "no ${cfg}"
    assert (graph["31"]["inputs"]["steps"], graph["31"]["inputs"]["cfg"]) == (6, 2.5)
    assert result.model == "my-flux"


async def test_cached_run_succeeds() -> None:
    """A run whose every node is served from cache still yields the image."""
    async with comfyui_server("cached") as server, backend_for(server.url) as backend:
        result = await backend.generate(request(), lambda s, t: None)
    assert result.image == server.png
    assert result.metadata["prompt_id"] == "3dfc46a0-b895-4759-a42e-1de90c8422a6"


@pytest.mark.parametrize(
    ("scenario", "expected", "error_class"),
    [
        (
            "unknown_node",
            "Cannot execute because node NoSuchNode does not exist. (Node ID '#1')",
            "configuration",  # the server lacks the node class: no job of it can run
        ),
        (
            "missing_input",
            "node 1 (EmptyImage) input width: Required input is missing",
            "permanent",
        ),
        (
            "missing_model",
            "node 1 (CheckpointLoaderSimple) input ckpt_name: 'nope.safetensors' not in []",
            "configuration",  # the server lacks the model file
        ),
    ],
)
async def test_validation_errors_name_the_node(
    scenario: str, expected: str, error_class: str
) -> None:
    """A 400 from POST /prompt names node, class, input and details; a node class or model
    file the server lacks is a configuration fault, any other refused value the job's."""
    async with comfyui_server(scenario) as server, backend_for(server.url) as backend:
        with pytest.raises(GenerationError) as info:
            await backend.generate(request(), lambda s, t: None)
    assert info.value.error_class == error_class
    assert expected in str(info.value)
    assert not [p for m, p, _ in server.requests if p == "/interrupt"]


async def test_malformed_500_is_transient_error() -> None:
    """The bare text/plain 500 page becomes a transient error quoting it."""
    async with comfyui_server("malformed") as server, backend_for(server.url) as backend:
        with pytest.raises(GenerationError) as info:
            await backend.generate(request(), lambda s, t: None)
    assert info.value.error_class == "transient"
    assert "HTTP 500" in str(info.value) and "Server got itself in trouble" in str(info.value)


async def test_runtime_error_names_node_and_exception() -> None:
    """execution_error fails the run naming node id, node type and exception message."""
    async with comfyui_server("runtime_error") as server, backend_for(server.url) as backend:
        with pytest.raises(GenerationError) as info:
            await backend.generate(request(), lambda s, t: None)
    message = str(info.value)
    assert "node 1 (CheckpointLoaderSimple)" in message
    assert "Error while deserializing header: header too large" in message
    assert info.value.error_class == "permanent"
    assert not [p for m, p, _ in server.requests if p == "/interrupt"]


async def test_interrupted_run_is_transient_error() -> None:
    """execution_interrupted from elsewhere fails the run as transient, naming the node."""
    async with comfyui_server("interrupted") as server, backend_for(server.url) as backend:
        with pytest.raises(GenerationError) as info:
            await backend.generate(request(), lambda s, t: None)
    assert info.value.error_class == "transient"
    assert "interrupted at node 3 (ImageBlur)" in str(info.value)


async def test_websocket_unavailable_falls_back_to_history_polling() -> None:
    """With /ws refused, /history is polled through its `{}` answers until the run is there."""
    async with (
        comfyui_server("no_ws") as server,
        backend_for(server.url, poll_interval_s=0.01) as backend,
    ):
        result = await backend.generate(request(), lambda s, t: None)
    assert result.image == server.png
    polls = [p for m, p, _ in server.requests if p == f"/history/{OK_ID}"]
    assert len(polls) == 3


async def test_websocket_drop_falls_back_to_history() -> None:
    """A socket closed mid-run is not an error: the result is read from /history."""
    async with (
        comfyui_server("ws_drop") as server,
        backend_for(server.url, poll_interval_s=0.01) as backend,
    ):
        result = await backend.generate(request(), lambda s, t: None)
    assert result.image == server.png


async def test_cancellation_sends_interrupt() -> None:
    """Cancelling generate posts /interrupt with the prompt id, then the cancel propagates."""
    async with comfyui_server("hang") as server, backend_for(server.url) as backend:
        with trio.move_on_after(5) as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(backend.generate, request(), lambda s, t: None)
                await server.prompted.wait()
                await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
        assert not scope.cancelled_caught
        await server.interrupted.wait()
    interrupts = [b for m, p, b in server.requests if m == "POST" and p == "/interrupt"]
    assert interrupts == [{"prompt_id": SLOW_ID}]
    deletes = [b for m, p, b in server.requests if m == "POST" and p == "/queue"]
    assert deletes == [{"delete": [SLOW_ID]}]


async def test_cancel_during_post_interrupts_the_requested_id() -> None:
    """Cancelled while POST /prompt is unanswered: the prompt_id we asked for is interrupted."""
    async with comfyui_server("slow_post") as server, backend_for(server.url) as backend:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend.generate, request(), lambda s, t: None)
            await server.prompted.wait()
            nursery.cancel_scope.cancel()
        await server.interrupted.wait()
    [body] = posted_prompts(server)
    interrupts = [b for m, p, b in server.requests if m == "POST" and p == "/interrupt"]
    assert interrupts == [{"prompt_id": body["prompt_id"]}]


async def test_timeout_is_transient_and_interrupts() -> None:
    """A run that outlasts timeout_s is a transient error, and the prompt is interrupted."""
    async with comfyui_server("hang") as server, backend_for(server.url, timeout_s=0.3) as backend:
        with pytest.raises(GenerationError) as info:
            await backend.generate(request(), lambda s, t: None)
    assert info.value.error_class == "transient"
    assert "timeout_s=0.3s" in str(info.value) and SLOW_ID in str(info.value)
    assert server.interrupted.is_set()


async def test_connection_refused_is_a_dependency_fault() -> None:
    """Nothing listening: generate fails transient, check reports unreachable."""
    url = f"http://127.0.0.1:{free_port()}"
    async with backend_for(url) as backend:
        with pytest.raises(GenerationError) as info:
            await backend.generate(request(), lambda s, t: None)
        status = await backend.check()
    assert info.value.error_class == "dependency"
    assert "connection refused" in str(info.value)
    assert status == BackendStatus.down(f"unreachable ({url}: connection refused)")


async def test_check_ok() -> None:
    """check() reads /system_stats, then /object_info for the workflow's classes and files."""
    async with comfyui_server("ok") as server, backend_for(server.url) as backend:
        assert await backend.check() == BackendStatus(True, "ok")
    assert server.requests == [("GET", "/system_stats", None), ("GET", "/object_info", None)]


async def test_check_names_a_missing_model_file_and_node_class() -> None:
    """A model file or node class the server lacks is a configuration fault naming it;
    for a node class, that ComfyUI may need updating."""
    async with comfyui_server("ok") as server, backend_for(server.url) as backend:
        server.missing_files = {"flux1-schnell-fp8.safetensors"}
        status = await backend.check()
        assert (status.ok, status.fault) == (False, "configuration")
        assert "model file 'flux1-schnell-fp8.safetensors'" in status.detail
        assert "CheckpointLoaderSimple.ckpt_name" in status.detail
        server.missing_files = set()
        server.missing_classes = {"KSampler"}
        status = await backend.check()
        assert (status.ok, status.fault) == (False, "configuration")
        assert "node class KSampler missing" in status.detail
        assert "ComfyUI may need updating" in status.detail


@pytest.mark.parametrize("name", ["flux1-schnell", "flux2-klein", "sd35-medium"])
async def test_bundled_workflows_render(name: str) -> None:
    """Every bundled workflow loads and renders to a graph with a SaveImage output."""
    async with backend_for("http://127.0.0.1:1", workflow=name) as backend:
        graph, values = backend.render(request())
    assert any(node["class_type"] == "SaveImage" for node in graph.values())
    text = json.dumps(graph)
    assert "${" not in text and "a fox in the snow" in text
    assert values["steps"] and values["cfg"] is not None


async def test_workflow_from_path_and_config_errors(tmp_path: Path) -> None:
    """workflow: may be a file path; unknown names, bad placeholders and keys are ConfigErrors."""
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "1": {"class_type": "CLIPTextEncode", "inputs": {"text": "${prompt}"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
            }
        )
    )
    async with backend_for("http://127.0.0.1:1", workflow=str(path)) as backend:
        assert backend.model == "mine"
    with pytest.raises(ConfigError, match="no bundled workflow 'nope'"):
        build("x", {"type": "comfyui", "workflow": "nope"})
    path.write_text(json.dumps({"1": {"class_type": "A", "inputs": {"t": "${promt}"}}}))
    with pytest.raises(ConfigError, match=r"unknown placeholder \$\{promt\} at node 1 input t"):
        build("x", {"type": "comfyui", "workflow": str(path)})
    with pytest.raises(ConfigError, match=r"backends\.x"):
        build("x", {"type": "comfyui", "wrkflow": "flux1-schnell"})
    with pytest.raises(ConfigError, match=r"backends\.x\.url"):
        build("x", {"type": "comfyui", "url": "ws://127.0.0.1:8188"})
    with pytest.raises(ConfigError, match=r"backends\.x\.timeout_s"):
        build("x", {"type": "comfyui", "timeout_s": 0})
