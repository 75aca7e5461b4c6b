"""ComfyUI workflow templates (loading, checking, rendering) and error texts.

A workflow is an API-format graph (``{node_id: {"class_type", "inputs"}}``) with
whole-value placeholders (see ``imagen_actors.templating``). One optional top-level key,
``"_imagen"``, holds defaults for the model (``{"model", "steps", "cfg"}``); it is removed
before the graph is sent. ``workflow:`` in the config names a bundled template
(``flux1-schnell`` -> ``workflows/flux1-schnell.json``) or a path to a JSON file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import attrs
import httpx
import msgspec

from imagen_actors import templating
from imagen_actors.errors import ConfigError
from imagen_actors.resources import workflows_dir

META_KEY: Final = "_imagen"


class WorkflowMeta(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    model: str | None = None
    steps: int | None = None
    cfg: float | None = None


@attrs.frozen(kw_only=True)
class Workflow:
    name: str  # "flux1-schnell", or the file's stem for a path
    source: str  # where it was read from
    graph: dict[str, Any]
    meta: WorkflowMeta
    placeholders: frozenset[str]

    def render(self, values: dict[str, object]) -> dict[str, Any]:
        rendered: dict[str, Any] = templating.render(self.graph, values)
        return rendered


def bundled_names() -> list[str]:
    try:
        return sorted(p.stem for p in workflows_dir().glob("*.json"))
    except FileNotFoundError:
        return []


def _is_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.endswith(".json") or spec.startswith("~")


def load_workflow(spec: str, *, instance: str) -> Workflow:
    """Read and check the workflow ``spec`` names; ConfigError naming the key otherwise."""
    key = f"backends.{instance}.workflow"
    if _is_path(spec):
        path = Path(spec).expanduser()
        name = path.stem
    else:
        name = spec
        path = workflows_dir() / f"{spec}.json"
        if not path.is_file():
            raise ConfigError(
                f"{key}: no bundled workflow {spec!r} (bundled: "
                f"{', '.join(bundled_names()) or 'none'}); or give a path to a JSON file"
            )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{key}: {path} is not valid JSON ({exc})") from exc
    return parse_workflow(tree, name=name, source=str(path), key=key)


def parse_workflow(tree: Any, *, name: str, source: str, key: str) -> Workflow:
    if not isinstance(tree, dict):
        raise ConfigError(f"{key}: {source} must hold a JSON object of nodes")
    graph = dict(tree)
    try:
        meta = msgspec.convert(graph.pop(META_KEY, {}), WorkflowMeta)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{key}: {source}: {META_KEY}: {exc}") from exc
    if not graph:
        raise ConfigError(f"{key}: {source} has no nodes")
    for node_id, node in graph.items():
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("class_type"), str)
            or not isinstance(node.get("inputs"), dict)
        ):
            raise ConfigError(
                f'{key}: {source}: node {node_id} needs "class_type" (string) and '
                '"inputs" (object); is this an API-format export (Save (API))?'
            )
    try:
        used = templating.check_template(graph)
    except templating.TemplateError as exc:
        raise ConfigError(f"{key}: {source}: {exc}") from exc
    if "prompt" not in used:
        raise ConfigError(f'{key}: {source} has no "${{prompt}}" input to put the prompt in')
    return Workflow(name=name, source=source, graph=graph, meta=meta, placeholders=frozenset(used))


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def validation_message(body: object) -> str:
    """A 400 from POST /prompt as one line naming each node, class, input and detail."""
    if not isinstance(body, dict):
        return "prompt rejected"
    error = body.get("error")
    parts: list[str] = []
    node_errors = body.get("node_errors")
    if isinstance(node_errors, dict):
        for node_id, entry in node_errors.items():
            if not isinstance(entry, dict):
                continue
            class_type = entry.get("class_type") or "?"
            for err in entry.get("errors") or []:
                if isinstance(err, dict):
                    parts.append(f"node {node_id} ({class_type}) {_input_error(err)}")
    if isinstance(error, dict):
        kind = _text(error.get("type")) or "error"
        message, details = _text(error.get("message")), _text(error.get("details"))
        if not parts:
            parts.append(f"{message} ({details})" if details else message or kind)
        return f"prompt rejected ({kind}): {'; '.join(parts)}"
    if isinstance(error, str) and not parts:
        parts.append(error)
    return f"prompt rejected: {'; '.join(parts) or 'no details'}"


def _input_error(err: dict[str, Any]) -> str:
    info = err.get("extra_info")
    input_name = info.get("input_name") if isinstance(info, dict) else None
    details, message = _text(err.get("details")), _text(err.get("message"))
    message = message or _text(err.get("type")) or "invalid"
    if not isinstance(input_name, str):
        return f"{message}: {details}" if details else message
    if details.startswith(f"{input_name}:"):
        text = f"input {details}"
    elif details and details != input_name:
        text = f"input {input_name}: {message} ({details})"
    else:
        text = f"input {input_name}: {message}"
    if err.get("type") == "value_not_in_list" and input_name.endswith("_name"):
        text += " (is that model file installed on the ComfyUI server?)"
    return text


def execution_error_message(data: dict[str, Any]) -> str:
    node = f"node {data.get('node_id', '?')} ({data.get('node_type', '?')})"
    kind = _text(data.get("exception_type")).rsplit(".", 1)[-1]
    message = _text(data.get("exception_message")) or "no message"
    return f"{node} failed: {kind + ': ' if kind else ''}{message}"


def interrupted_message(data: dict[str, Any]) -> str:
    return (
        f"run interrupted at node {data.get('node_id', '?')} "
        f"({data.get('node_type', '?')}) by someone else"
    )


def is_transient_failure(data: dict[str, Any]) -> bool:
    """Out-of-memory and similar resource errors may pass on a retry; others will not."""
    text = f"{data.get('exception_type', '')} {data.get('exception_message', '')}".lower()
    return any(
        s in text
        for s in (
            "out of memory",
            "outofmemory",
            "cuda error",
            "connection reset",
            "temporarily unavailable",
        )
    )


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


def network_reason(exc: BaseException) -> str:
    if _refused(exc):
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__
