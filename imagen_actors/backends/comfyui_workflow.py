"""ComfyUI workflow templates (loading, checking, rendering) and error texts.

A workflow is an API-format graph (``{node_id: {"class_type", "inputs"}}``) with
whole-value placeholders (see ``comfyui_templating``). One optional top-level key,
``"_imagen"``, holds defaults for the model (``{"model", "steps", "cfg"}``), the id of the
output node whose image is taken (``"output"``; default: the first Save* node, else the
first Preview* node) and the oldest ComfyUI that has every node the graph uses
(``"min_comfyui"``); it is removed before the graph is sent. ``workflow:`` in the config
names a bundled template (``flux1-schnell`` -> ``workflows/flux1-schnell.json``) or a path
to a JSON file, read like the config (``config.files``: a regular UTF-8 file of at most
1 MiB, nested at most 32 deep).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

import attrs
import httpx
import msgspec

from imagen_actors.backends import comfyui_templating as templating
from imagen_actors.config import files
from imagen_actors.config.bundled import workflows_dir
from imagen_actors.config.explain import explain
from imagen_actors.core.errors import ConfigError

META_KEY: Final = "_imagen"
# Where the image comes from: ComfyUI's SaveImage / PreviewImage (and custom Save* nodes).
_OUTPUT_NODE: Final = re.compile(r"save|preview", re.IGNORECASE)
# Inputs whose type every stock ComfyUI node agrees on, for checking placeholders.
INPUT_KINDS: Final[dict[str, type]] = {
    "seed": int,
    "noise_seed": int,
    "steps": int,
    "width": int,
    "height": int,
    "batch_size": int,
    "cfg": float,
    "denoise": float,
    "guidance": float,
    "text": str,
    "text_g": str,
    "text_l": str,
    "clip_l": str,
    "t5xxl": str,
}


class WorkflowMeta(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    model: str | None = None
    steps: int | None = None
    cfg: float | None = None
    output: str | None = None  # node id whose image is taken
    min_comfyui: str | None = None  # e.g. "0.9.2": older servers lack a node it uses


@attrs.frozen(kw_only=True)
class Workflow:
    name: str  # "flux1-schnell", or the file's stem for a path
    source: str  # where it was read from
    graph: dict[str, Any]
    meta: WorkflowMeta
    placeholders: frozenset[str]
    output_node: str  # the node whose image is taken from /history

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
    text = files.read_text_file(path, what=f"{key}:", key=key)
    try:
        tree = files.load_json(text, what=f"{key}: {path}", key=key)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{key}: {path} is not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}; fix the JSON there, or export the workflow again from ComfyUI "
            "with Save (API)",
            key=key,
        ) from exc
    return parse_workflow(tree, name=name, source=str(path), key=key)


def parse_workflow(tree: Any, *, name: str, source: str, key: str) -> Workflow:
    """Check an API-format graph; ConfigError naming ``key``, the file, the node and the fix."""

    def fail(message: str) -> ConfigError:
        return ConfigError(f"{key}: {source}{message}", key=key)

    if not isinstance(tree, dict):
        raise fail(
            " must hold a JSON object of nodes ({node_id: {class_type, inputs}}); "
            "export it from ComfyUI with Save (API)"
        )
    graph = dict(tree)
    try:
        meta = msgspec.convert(graph.pop(META_KEY, {}), WorkflowMeta)
    except msgspec.ValidationError as exc:
        detail = explain(
            exc,
            root=WorkflowMeta,
            raw=tree.get(META_KEY),
            prefix=META_KEY,
            hint=f'write it like "{META_KEY}": {{"model": "flux1-schnell-fp8", "steps": 4, '
            '"cfg": 1.0}',
        )
        raise fail(f": {detail}") from exc
    if meta.min_comfyui is not None and version_tuple(meta.min_comfyui) is None:
        raise fail(
            f': {META_KEY}.min_comfyui {meta.min_comfyui!r} is not a version; write it like "0.9.2"'
        )
    if not graph:
        raise fail(" has no nodes; export the workflow from ComfyUI with Save (API)")
    for node_id, node in graph.items():
        if (
            not isinstance(node, dict)
            or not isinstance(node.get("class_type"), str)
            or not isinstance(node.get("inputs"), dict)
        ):
            raise fail(
                f': node {node_id} needs "class_type" (string) and "inputs" (object); '
                "is this an API-format export (Save (API))?"
            )
    try:
        used = templating.check_template(graph)
    except templating.TemplateError as exc:
        raise fail(f": {exc}") from exc
    problem = _type_mismatch(graph) or _dangling_link(graph)
    if problem is not None:
        raise fail(f": {problem}")
    if "prompt" not in used:
        raise fail(
            ' has no "${prompt}" input to put the prompt in; set the text input of the '
            'positive CLIPTextEncode node to "${prompt}"'
        )
    if meta.output is not None and meta.output not in graph:
        raise fail(
            f": {META_KEY}.output names node {meta.output!r}, which is not in the workflow; "
            f"name the SaveImage node's id (nodes: {', '.join(graph)})"
        )
    output = meta.output or _default_output(graph)
    if output is None:
        raise fail(
            " has no output node (SaveImage or PreviewImage), so there is no image to "
            "download; add a SaveImage node fed by the VAEDecode node's IMAGE output"
        )
    return Workflow(
        name=name,
        source=source,
        graph=graph,
        meta=meta,
        placeholders=frozenset(used),
        output_node=output,
    )


def _default_output(graph: dict[str, Any]) -> str | None:
    """The first Save* node in document order, else the first Preview* node."""
    found = [(i, _OUTPUT_NODE.search(n["class_type"])) for i, n in graph.items()]
    matches = [(i, m.group(0).lower()) for i, m in found if m]
    for wanted in ("save", "preview"):
        for node_id, kind in matches:
            if kind == wanted:
                return node_id
    return None


def input_value(graph: dict[str, Any], name: str) -> object | None:
    """The first literal (not linked) value of an input called ``name`` in ``graph``."""
    for node in graph.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        value = inputs.get(name) if isinstance(inputs, dict) else None
        if value is not None and not isinstance(value, list | dict):
            found: object = value
            return found
    return None


def version_tuple(text: object) -> tuple[int, ...] | None:
    """``"0.3.64"`` / ``"v0.9.2"`` -> ``(0, 3, 64)`` / ``(0, 9, 2)``; None if not a version."""
    match = re.match(r"v?(\d+(?:\.\d+)*)", text.strip()) if isinstance(text, str) else None
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def _type_mismatch(graph: dict[str, Any]) -> str | None:
    """A placeholder whose type cannot fit a stock ComfyUI input of that name."""
    for path, name in templating.find_placeholders(graph):
        if len(path) != 3 or path[1] != "inputs":
            continue
        wants = INPUT_KINDS.get(str(path[2]))
        gives = templating.PLACEHOLDERS[name]
        if wants is None or gives is wants or (wants is float and gives is int):
            continue
        fits = [n for n, t in templating.PLACEHOLDERS.items() if t is wants]
        best = f"${{{path[2]}}}" if path[2] in fits else " or ".join(f"${{{n}}}" for n in fits)
        return (
            f"${{{name}}} at {templating.describe(path)} gives {templating.kind(gives)}, but "
            f"input {path[2]} takes {templating.kind(wants)}; use {best} there"
        )
    return None


def _dangling_link(graph: dict[str, Any]) -> str | None:
    """A link ``[node_id, output]`` to a node that is not in the graph."""
    for node_id, node in graph.items():
        for input_name, value in node["inputs"].items():
            if (
                isinstance(value, list)
                and len(value) == 2
                and isinstance(value[0], str)
                and isinstance(value[1], int)
                and value[0] not in graph
            ):
                return (
                    f"node {node_id} input {input_name} links to node {value[0]}, which is "
                    "not in the workflow; add that node or fix the link (export the workflow "
                    "again with Save (API))"
                )
    return None


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


def dropped_output_message(workflow: Workflow, body: dict[str, Any]) -> str:
    """A 200 whose ``node_errors`` drop our output node, as the job's error."""
    output = workflow.output_node
    kind = workflow.graph[output]["class_type"]
    return (
        f"{validation_message(body)}; the output node {output} ({kind}) will not run, so "
        f"workflow {workflow.name} has no image to give (fix the node named above)"
    )


def version_hint(workflow: Workflow, body: object) -> str:
    """For an unknown-node 400: the ComfyUI version the workflow needs, if it says."""
    needs = workflow.meta.min_comfyui
    error = body.get("error") if isinstance(body, dict) else None
    if needs and isinstance(error, dict) and error.get("type") == "invalid_prompt":
        return f" (workflow {workflow.name} needs ComfyUI {needs} or newer)"
    return ""


def version_problem(workflow: Workflow, stats: dict[str, Any]) -> str | None:
    """Why ``/system_stats`` shows a server older than the workflow's ``min_comfyui``."""
    needs = workflow.meta.min_comfyui
    system = stats.get("system")
    has = system.get("comfyui_version") if isinstance(system, dict) else None
    have, want = version_tuple(has), version_tuple(needs)
    if have is None or want is None or have >= want:
        return None
    return (
        f"runs ComfyUI {has}; workflow {workflow.name} needs {needs} or newer: update "
        "ComfyUI or choose another workflow"
    )


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
