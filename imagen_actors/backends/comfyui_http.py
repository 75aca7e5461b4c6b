"""ComfyUI's HTTP calls around a run: /history, /view, where the prompt is in the queue
(GET /queue), and taking it back out (cancel).

Shapes: ``history_*.json``, ``view_ok.json``, ``queue_running.json`` (positional items),
``queue_delete.json`` and ``interrupt_running.json`` in /work/shared/fixtures/comfyui.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import attrs
import httpx
import trio

from imagen_actors.backends.comfyui_messages import json_or_none, queue_state
from imagen_actors.backends.comfyui_workflow import network_reason
from imagen_actors.core.errors import ErrorClass, GenerationError

log = logging.getLogger("imagen_actors.backends.comfyui")

CANCEL_TIMEOUT_S: Final = 5.0
# A prompt found neither in GET /queue nor in /history this many checks in a row is gone
# (one miss could be a race with completion).
VANISHED_AFTER: Final = 2


@attrs.define
class Run:
    """What one ``generate`` knows about its prompt."""

    prompt_id: str | None = None
    pending_id: str | None = None  # the id we asked for while POST /prompt is in flight
    finished: bool = False  # the server no longer runs it (done, failed, interrupted)
    missing: int = 0  # consecutive checks that found it neither queued nor in history
    executing: str | None = None  # the node the server last said it runs
    sent: tuple[bytes, str] | None = None  # the image a SaveImageWebsocket output sent


# What a proxy in front of a ComfyUI that is not there (restarting) answers.
UNAVAILABLE: Final = frozenset({502, 503, 504})


def error(message: str, error_class: ErrorClass) -> GenerationError:
    """The adapter's errors. No instance name: the Executor prefixes it ("flux: ComfyUI: ...").

    ``dependency`` for the server being unreachable or failing (network errors, 5xx);
    ``configuration`` for what it lacks; ``transient``/``permanent`` for this prompt's run."""
    return GenerationError(f"ComfyUI: {message}", error_class=error_class)


def _base(client: httpx.AsyncClient) -> str:
    return str(client.base_url).rstrip("/")


async def history_entry(client: httpx.AsyncClient, prompt_id: str) -> dict[str, Any] | None:
    """The prompt's /history entry; None while it is unknown or unfinished (``{}``)."""
    try:
        resp = await client.get(f"/history/{prompt_id}")
    except httpx.HTTPError as exc:
        raise error(f"GET /history: {_base(client)}: {network_reason(exc)}", "dependency") from exc
    if resp.status_code >= 400:
        status = resp.status_code
        kind: ErrorClass = "dependency" if status in UNAVAILABLE else "transient"
        raise error(
            f"GET /history/{prompt_id}: HTTP {status}", kind if status >= 500 else "permanent"
        )
    body = json_or_none(resp)
    entry = body.get(prompt_id) if isinstance(body, dict) else None
    return entry if isinstance(entry, dict) else None


async def check_alive(client: httpx.AsyncClient, run: Run) -> dict[str, Any] | None:
    """The history entry once the prompt is done; None while queued; raises when gone."""
    prompt_id = str(run.prompt_id)
    try:
        state = await where(client, prompt_id)
    except httpx.HTTPError as exc:
        raise error(f"GET /queue: {_base(client)}: {network_reason(exc)}", "dependency") from exc
    if state != "absent":
        run.missing = 0
        return None
    # Out of the queue: history has it unless the prompt was cleared or lost.
    entry = await history_entry(client, prompt_id)
    if entry is not None:
        return entry
    run.missing += 1
    if run.missing < VANISHED_AFTER:
        return None
    run.finished = True
    raise error(
        f"prompt {prompt_id} vanished from ComfyUI's queue (cleared or restarted): "
        f"GET /queue and /history/{prompt_id} at {_base(client)} no longer know it",
        "transient",
    )


async def download(client: httpx.AsyncClient, ref: dict[str, Any]) -> tuple[bytes, str]:
    """The bytes and mime type of one history image reference, from /view."""
    params = {
        "filename": ref["filename"],
        "subfolder": ref.get("subfolder") or "",
        "type": ref.get("type") or "output",
    }
    try:
        resp = await client.get("/view", params=params)
    except httpx.HTTPError as exc:
        raise error(f"GET /view: {_base(client)}: {network_reason(exc)}", "dependency") from exc
    if resp.status_code != 200:
        raise error(f"GET /view {ref['filename']}: HTTP {resp.status_code}", "transient")
    mime = resp.headers.get("content-type", "").split(";")[0].strip()
    return resp.content, mime if mime.startswith("image/") else "image/png"


async def where(client: httpx.AsyncClient, prompt_id: str) -> str:
    """``running``, ``pending``, ``absent``, or ``unknown`` (an answer of another shape).

    Raises httpx.HTTPError when the server cannot be reached; a 5xx is ``unavailable``.
    """
    resp = await client.get("/queue")
    if resp.status_code >= 500:
        return "unavailable"
    if resp.status_code != 200:
        return "unknown"
    return queue_state(json_or_none(resp), prompt_id)


async def cancel(
    client: httpx.AsyncClient, prompt_id: str, *, answered: bool, instance: str
) -> None:
    """Drop our prompt from the queue, then stop it if it runs; never raises.

    Delete first: a prompt that starts between the two calls is then caught by the
    interrupt (the other order lets it escape both). The interrupt names the prompt, which
    servers since 2025 honour (``interrupt_running.json``); older ones stop whatever runs,
    so once the server has answered POST /prompt (``answered``) the interrupt is sent only
    while GET /queue does not show our prompt gone or still waiting. A cancel while POST
    /prompt is in flight sends it unconditionally: only servers that honour the
    ``prompt_id`` we chose can be running that id. Runs shielded, within CANCEL_TIMEOUT_S.
    """
    with trio.move_on_after(CANCEL_TIMEOUT_S) as scope:
        scope.shield = True
        try:
            await client.post("/queue", json={"delete": [prompt_id]})
            if answered and await where(client, prompt_id) in ("absent", "pending"):
                return
            await client.post("/interrupt", json={"prompt_id": prompt_id})
        except httpx.HTTPError as exc:
            log.warning(
                "comfyui %s: could not cancel prompt %s: %s",
                instance,
                prompt_id,
                network_reason(exc),
            )
