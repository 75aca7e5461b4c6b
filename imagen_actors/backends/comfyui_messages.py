"""What ComfyUI's websocket frames and ``/history`` entries say, read without I/O.

Shapes: /work/shared/fixtures/comfyui (``executing``, ``progress``, ``execution_*`` frames;
history entries with ``outputs`` and ``status.messages``).
"""

from __future__ import annotations

import json
from typing import Any, Final

import httpx
from httpx_ws import AsyncWebSocketSession
from wsproto.events import BytesMessage, TextMessage

# Binary frames: 4-byte big-endian event type, then (type 1) a 4-byte image format code
# and the image (``ws_messages_binary.json``; SaveImageWebsocket and previews).
_BINARY_IMAGE: Final = 1
_FORMATS: Final = {1: "image/jpeg", 2: "image/png"}


async def next_frame(ws: AsyncWebSocketSession) -> dict[str, Any] | bytes | None:
    """The next frame: a text frame as a JSON object, a binary one as bytes; None for junk."""
    event = await ws.receive()
    if isinstance(event, BytesMessage):
        return bytes(event.data)
    if not isinstance(event, TextMessage):
        return None
    try:
        frame = json.loads(event.data)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


def binary_image(frame: bytes) -> tuple[bytes, str] | None:
    """``(image, mime)`` of a type-1 binary frame (a legacy client's image), else None."""
    if len(frame) <= 8 or int.from_bytes(frame[:4], "big") != _BINARY_IMAGE:
        return None
    mime = _FORMATS.get(int.from_bytes(frame[4:8], "big"))
    return (frame[8:], mime) if mime else None


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


def first_image(entry: dict[str, Any], node_id: str) -> dict[str, Any] | None:
    """The first image node ``node_id`` saved (``output`` before ``temp``), if any.

    Only that node: a graph with other output branches must never hand back their image.
    """
    outputs = entry.get("outputs")
    output = outputs.get(node_id) if isinstance(outputs, dict) else None
    images = [
        i
        for i in (output.get("images") or [] if isinstance(output, dict) else [])
        if isinstance(i, dict) and isinstance(i.get("filename"), str)
    ]
    images.sort(key=lambda i: i.get("type") != "output")
    return images[0] if images else None


def dropped_outputs(body: dict[str, Any]) -> set[str]:
    """Output node ids a 200 from POST /prompt says will not run.

    ``node_errors`` is keyed by the node that failed validation; its ``dependent_outputs``
    lists the output nodes that depend on it (the server drops those and runs the rest).
    """
    dropped: set[str] = set()
    node_errors = body.get("node_errors")
    if not isinstance(node_errors, dict):
        return dropped
    for node_id, entry in node_errors.items():
        dropped.add(str(node_id))
        outputs = entry.get("dependent_outputs") if isinstance(entry, dict) else None
        dropped.update(str(o) for o in outputs or [] if isinstance(o, str | int))
    return dropped


def queue_state(body: Any, prompt_id: str) -> str:
    """Where GET /queue has ``prompt_id``: ``running``, ``pending``, ``absent``, or ``unknown``.

    Items are positional ``[number, prompt_id, prompt, extra_data, outputs]`` arrays
    (``queue_running.json``); a body of another shape is ``unknown``.
    """
    if not isinstance(body, dict):
        return "unknown"
    lists = body.get("queue_running"), body.get("queue_pending")
    if not all(isinstance(items, list) for items in lists):
        return "unknown"
    for state, items in zip(("running", "pending"), lists, strict=True):
        for item in items or []:
            if isinstance(item, list) and len(item) > 1 and item[1] == prompt_id:
                return state
    return "absent"
