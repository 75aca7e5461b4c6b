"""ComfyUI's edges found against a real 0.3.64 (issue 15, items 6-10), over the fake.

Outputs dropped by a 200's ``node_errors``, a prompt that vanished from the queue,
cancelling in the order that lets nothing escape, recording what ran (steps, cfg, the
image's real size), proxies, the progress bar, workflow version needs.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from imagen_actors.backends.base import GenerationRequest, trust_env_for
from imagen_actors.cli.progress import ProgressBar
from imagen_actors.core.errors import ConfigError, GenerationError
from tests.fakes.comfyui_server import FakeComfyUI, comfyui_server
from tests.integration.test_comfyui import OK_ID, SLOW_ID, backend_for, posted_prompts, request


def two_outputs(tmp_path: Path, **meta: Any) -> str:
    """A workflow with our SaveImage (node 9, first) and another branch's (node 20)."""
    graph: dict[str, Any] = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "nope.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "${prompt}", "clip": ["1", 1]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ours", "images": ["6", 0]}},
        "19": {"class_type": "EmptyImage", "inputs": {"width": "${width}", "height": 64}},
        "20": {"class_type": "SaveImage", "inputs": {"filename_prefix": "b", "images": ["19", 0]}},
    }
    if meta:
        graph["_imagen"] = meta
    path = tmp_path / "two-outputs.json"
    path.write_text(json.dumps(graph))
    return str(path)


def requests_to(server: FakeComfyUI, method: str, path: str) -> list[Any]:
    return [b for m, p, b in server.requests if (m, p) == (method, path)]


# -- item 6: node_errors on a 200 -------------------------------------------------------


async def test_dropped_output_node_is_a_permanent_failure(tmp_path: Path) -> None:
    """200 whose node_errors drop our output node: a job fault, never another branch's image."""
    async with (
        comfyui_server("partial_outputs") as server,
        backend_for(server.url, workflow=two_outputs(tmp_path)) as backend,
    ):
        server.drop = {"9"}
        with pytest.raises(GenerationError) as info:
            await backend.generate(request(), lambda s, t: None)
    assert info.value.error_class == "permanent"
    message = str(info.value)
    assert "node 1 (CheckpointLoaderSimple) input ckpt_name: 'nope.safetensors' not in" in message
    assert "output node 9 (SaveImage) will not run" in message
    assert not requests_to(server, "GET", "/view")
    # The other branch was queued: it is taken back out rather than left to run.
    assert requests_to(server, "POST", "/queue") == [{"delete": [OK_ID]}]


async def test_dropped_other_output_warns_and_takes_our_image(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """node_errors on another output while ours is valid: the run goes on, with a warning."""
    async with (
        comfyui_server("partial_outputs") as server,
        backend_for(server.url, workflow=two_outputs(tmp_path)) as backend,
    ):
        server.drop = {"20"}
        with caplog.at_level(logging.WARNING, logger="imagen_actors.backends.comfyui"):
            result = await backend.generate(request(), lambda s, t: None)
    assert result.image == server.png
    assert "other outputs than node 9 were dropped" in caplog.text
    assert "node 1 (CheckpointLoaderSimple)" in caplog.text


async def test_imagen_output_names_the_node_to_take(tmp_path: Path) -> None:
    """``_imagen.output`` picks the output node; one the graph lacks is a config error."""
    async with (
        comfyui_server("partial_outputs") as server,
        backend_for(server.url, workflow=two_outputs(tmp_path, output="20")) as backend,
    ):
        server.drop = {"9"}
        result = await backend.generate(request(), lambda s, t: None)
    assert result.image == server.png
    with pytest.raises(ConfigError, match=r"_imagen\.output names node '7', which is not in"):
        async with backend_for(server.url, workflow=two_outputs(tmp_path, output="7")):
            pass


# -- item 7: a prompt that vanished ------------------------------------------------------


async def test_vanished_prompt_fails_transient_within_seconds() -> None:
    """Cleared from the queue (or lost in a restart): noticed by GET /queue, not timeout_s."""
    async with (
        comfyui_server("vanished") as server,
        backend_for(server.url, timeout_s=300, queue_check_s=0.05) as backend,
    ):
        with trio.fail_after(30), pytest.raises(GenerationError) as info:
            await backend.generate(request(), lambda s, t: None)
    assert info.value.error_class == "transient"
    assert f"prompt {OK_ID} vanished from ComfyUI's queue (cleared or restarted)" in str(info.value)
    # Twice in a row before giving up: one miss can be a race with completion.
    assert len(requests_to(server, "GET", "/queue")) == 2
    assert len(requests_to(server, "GET", f"/history/{OK_ID}")) == 2


async def test_running_prompt_is_not_taken_for_vanished() -> None:
    """A prompt GET /queue lists as running is waited for (here until timeout_s)."""
    async with (
        comfyui_server("hang") as server,
        backend_for(server.url, timeout_s=0.6, queue_check_s=0.02) as backend,
    ):
        with pytest.raises(GenerationError) as info:
            await backend.generate(request(), lambda s, t: None)
    assert "timeout_s=0.6s" in str(info.value) and "vanished" not in str(info.value)
    assert len(requests_to(server, "GET", "/queue")) >= 3


# -- item 8: cancel = delete, then interrupt ---------------------------------------------


async def test_cancel_deletes_from_the_queue_before_interrupting() -> None:
    """A running prompt: POST /queue delete first, then POST /interrupt naming it."""
    async with comfyui_server("hang") as server, backend_for(server.url) as backend:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend.generate, request(), lambda s, t: None)
            await server.prompted.wait()
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    calls = [(p, b) for m, p, b in server.requests if m == "POST" and p != "/prompt"]
    assert calls == [("/queue", {"delete": [SLOW_ID]}), ("/interrupt", {"prompt_id": SLOW_ID})]
    assert server.state == "interrupted"


async def test_cancel_catches_a_prompt_that_starts_between_the_two_calls() -> None:
    """Waiting when the cancel begins, starting right after its first call: still stopped.

    Interrupting first (nothing of ours runs yet) and deleting second (it no longer waits)
    let it escape both and run to the end. Deleting first leaves nothing to interrupt, so
    no interrupt is sent (an old server would stop someone else's run).
    """
    async with comfyui_server("pending_then_start") as server, backend_for(server.url) as backend:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend.generate, request(), lambda s, t: None)
            await server.prompted.wait()
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert server.state == "deleted"
    assert not requests_to(server, "POST", "/interrupt")


# -- item 9: what is recorded is what ran ------------------------------------------------


async def test_result_carries_the_size_of_the_image() -> None:
    """Width/height come from the PNG (the fake's is 512x512), not from the request."""
    async with comfyui_server("ok") as server, backend_for(server.url) as backend:
        result = await backend.generate(
            GenerationRequest(prompt="p", user_prompt="p", width=770, height=514, seed=1),
            lambda s, t: None,
        )
    assert (result.width, result.height) == (512, 512)
    recorded = result.recorded_metadata()
    assert (recorded["width"], recorded["height"]) == (512, 512)
    assert (recorded["steps"], recorded["cfg"]) == (4, 1.0)


async def test_steps_and_cfg_are_recorded_only_when_the_workflow_has_them(
    tmp_path: Path,
) -> None:
    """A workflow without a sampler records neither, even when the job asks for steps."""
    path = tmp_path / "no-sampler.json"
    path.write_text(
        json.dumps(
            {
                "_imagen": {"steps": 20, "cfg": 5.0},
                "1": {"class_type": "CLIPTextEncode", "inputs": {"text": "${prompt}"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
            }
        )
    )
    async with comfyui_server("ok") as server, backend_for(server.url, workflow=str(path)) as b:
        result = await b.generate(request(steps=30), lambda s, t: None)
    assert "steps" not in result.metadata and "cfg" not in result.metadata
    assert result.metadata["workflow"] == "no-sampler"


# -- item 10: proxies, progress bar, versions --------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_loopback_backend_ignores_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY/ALL_PROXY pointing at a closed port do not reach loopback ComfyUI."""
    proxy = f"http://127.0.0.1:{closed_port()}"
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with comfyui_server("ok") as server, backend_for(server.url) as backend:
        result = await backend.generate(request(), lambda s, t: None)
        status = await backend.check()
    assert result.image == server.png and status.ok


@pytest.mark.parametrize(
    ("url", "trust"),
    [
        ("http://127.0.0.1:8188", False),
        ("http://127.9.9.9:8188", False),
        ("http://localhost:8188", False),
        ("http://[::1]:8188", False),
        ("http://gpu-box.lan:8188", True),
        ("http://10.0.0.5:8188", True),
        ("https://api.replicate.com", True),
    ],
)
def test_trust_env_only_off_loopback(url: str, trust: bool) -> None:
    assert trust_env_for(url) is trust


async def test_progress_bar_ends_when_the_last_frame_is_max_minus_one() -> None:
    """The fake's captured progress ends at 1/2; end() still clears the bar for the summary."""
    out = io.StringIO()
    bar = ProgressBar(out)
    async with comfyui_server("ok") as server, backend_for(server.url) as backend:
        await backend.generate(request(), lambda s, t: bar(uuid.UUID(OK_ID), s, t))
    assert "1/2" in out.getvalue() and bar.drawn
    bar.end()
    print("summary", file=out)
    last = out.getvalue().rsplit("\r", 1)[1]
    assert last == "summary\n"
    assert out.getvalue().rsplit("\r", 2)[1].strip() == ""  # the bar's line was erased


async def test_workflow_needing_a_newer_comfyui_says_so() -> None:
    """flux2-klein needs 0.9.2: check() on the captured 0.3.64 is not ok and says why."""
    async with comfyui_server("ok") as server, backend_for(server.url, workflow="flux2-klein") as b:
        status = await b.check()
    assert not status.ok
    assert "runs ComfyUI 0.3.64; workflow flux2-klein needs 0.9.2 or newer" in status.detail
    async with (
        comfyui_server("unknown_node") as server,
        backend_for(server.url, workflow="flux2-klein") as b,
    ):
        with pytest.raises(GenerationError, match=r"needs ComfyUI 0\.9\.2 or newer"):
            await b.generate(request(), lambda s, t: None)
    [body] = posted_prompts(server)
    assert "_imagen" not in body["prompt"]


# -- item 10: one copy on the host (ComfyUI keeps none with SaveImageWebsocket) ----------


async def test_save_image_websocket_output_comes_from_the_socket(tmp_path: Path) -> None:
    """The image is the binary frame our output node sent; nothing is fetched from /view."""
    path = tmp_path / "ws-out.json"
    path.write_text(
        json.dumps(
            {
                "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "${prompt}"}},
                "8": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0]}},
                "9": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["8", 0]}},
            }
        )
    )
    steps: list[tuple[int, int]] = []
    async with (
        comfyui_server("ws_image") as server,
        backend_for(server.url, workflow=str(path)) as backend,
    ):
        result = await backend.generate(request(), lambda s, t: steps.append((s, t)))
    assert result.image == server.png and result.mime == "image/png"
    assert (result.width, result.height) == (512, 512)
    assert not requests_to(server, "GET", "/view")
    assert steps == []  # the output node's own "progress" counts images, not steps
