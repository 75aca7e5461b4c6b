"""What ComfyUI's websocket frames and ``/history`` entries say, read without I/O.

Shapes: /work/shared/fixtures/comfyui (``executing``, ``progress``, ``execution_*`` frames;
history entries with ``outputs`` and ``status.messages``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from httpx_ws import AsyncWebSocketSession
from wsproto.events import TextMessage


async def next_frame(ws: AsyncWebSocketSession) -> dict[str, Any] | None:
    """The next text frame as a JSON object; None for binary previews and junk."""
    event = await ws.receive()
    if not isinstance(event, TextMessage):
        return None
    try:
        frame = json.loads(event.data)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


def json_or_none(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def failure_in_history(entry: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(event, data)`` of the run's failure when the entry records one, else None.

    An entry whose status is ``error`` but names no failure message yields ``("", {})``:
    the run failed and nothing says why.
    """
    status = entry.get("status")
    if not (isinstance(status, dict) and status.get("status_str") == "error"):
        return None
    for message in status.get("messages") or []:
        if not (isinstance(message, list) and len(message) == 2 and isinstance(message[1], dict)):
            continue
        event, data = message
        if event in ("execution_error", "execution_interrupted"):
            return str(event), data
    return "", {}


def first_image(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The first saved image in the entry's outputs (``output`` before ``temp``), if any."""
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
    return images[0] if images else None
