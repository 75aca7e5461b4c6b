"""Does this ComfyUI server have what the workflow needs? ``/object_info`` against the graph.

The same check runs at worker start, as the health probe while the backend is unhealthy,
and in ``imagen-actors backends`` / ``config check``: every node class the workflow uses
must be known to the server (else ComfyUI may need updating, or a custom node installing),
and every file a loader names (``ckpt_name``, ``unet_name``, ``vae_name`` ...) must be in
that input's list. Either missing is a *configuration* fault: no job can run until the
server or the workflow is fixed, and none consumes an attempt meanwhile.

``rejection_class`` classifies a 400 from ``POST /prompt`` the same way: a node class or a
model file the server lacks is the server's configuration; any other refused value is the
job's fault (``permanent``).
"""

from __future__ import annotations

from typing import Any

import httpx

from imagen_actors.backends.comfyui_messages import json_or_none
from imagen_actors.backends.comfyui_templating import placeholder_name
from imagen_actors.backends.comfyui_workflow import Workflow, network_reason, version_problem
from imagen_actors.core.errors import ErrorClass
from imagen_actors.core.records import Checked


async def check_server(client: httpx.AsyncClient, url: str, workflow: Workflow) -> Checked:
    """The preflight of one ComfyUI instance: ``/system_stats`` answers and the version is
    new enough (else down / misconfigured), then ``missing_in`` over ``/object_info``."""
    try:
        resp = await client.get("/system_stats", timeout=5.0)
        stats = json_or_none(resp)
        if resp.status_code != 200 or not isinstance(stats, dict):
            return Checked.down(f"unhealthy ({url}: HTTP {resp.status_code})")
        problem = version_problem(workflow, stats)
        if problem is not None:
            return Checked.misconfigured(f"too old ({url} {problem})")
        resp = await client.get("/object_info", timeout=30.0)
    except httpx.HTTPError as exc:
        return Checked.down(f"unreachable ({url}: {network_reason(exc)})")
    info = json_or_none(resp)
    if resp.status_code != 200 or not isinstance(info, dict):
        return Checked.down(f"unhealthy ({url}: GET /object_info answered HTTP {resp.status_code})")
    missing = missing_in(workflow.graph, info, url=url)
    if missing is not None:
        return Checked.misconfigured(f"workflow {workflow.name}: {missing}")
    return Checked(True, "ok")


def combo_choices(spec: Any) -> list[Any] | None:
    """The allowed values of a combo input spec (``[[a, b], {...}]`` or the newer
    ``["COMBO", {"options": [a, b]}]``); None for any other kind of input."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options")
        return options if isinstance(options, list) else None
    return None


def _input_specs(info: dict[str, Any]) -> dict[str, Any]:
    inputs = info.get("input") if isinstance(info, dict) else None
    specs: dict[str, Any] = {}
    if isinstance(inputs, dict):
        for group in ("required", "optional"):
            part = inputs.get(group)
            if isinstance(part, dict):
                specs.update(part)
    return specs


def missing_in(graph: dict[str, Any], object_info: dict[str, Any], *, url: str) -> str | None:
    """What the server at ``url`` lacks for ``graph``, as one line naming it and the fix;
    None when it has everything."""
    classes: set[str] = set()
    files: list[str] = []
    for node_id, node in graph.items():
        if not isinstance(node, dict):
            continue
        class_type = str(node.get("class_type"))
        info = object_info.get(class_type)
        if info is None:
            classes.add(class_type)
            continue
        specs = _input_specs(info)
        inputs = node.get("inputs")
        for name, value in inputs.items() if isinstance(inputs, dict) else ():
            if not isinstance(value, str) or placeholder_name(value) is not None or "${" in value:
                continue
            choices = combo_choices(specs.get(name))
            if choices is not None and value not in choices:
                files.append(f"{value!r} (node {node_id} {class_type}.{name})")
    problems: list[str] = []
    if classes:
        problems.append(
            f"node class {', '.join(sorted(classes))} missing on {url}: ComfyUI may need "
            "updating (or the custom node installing)"
        )
    if files:
        problems.append(
            f"model file {', '.join(files)} not found on {url}: put it in ComfyUI's models "
            "folder or name one the server has"
        )
    return "; ".join(problems) or None


def rejection_class(body: object) -> ErrorClass:
    """A 400 from POST /prompt: ``configuration`` when the server lacks a node class or a
    model file (``value_not_in_list`` on a loader's ``*_name`` input), else ``permanent``."""
    if not isinstance(body, dict):
        return "permanent"
    error = body.get("error")
    if (
        isinstance(error, dict)
        and error.get("type") == "invalid_prompt"
        and "does not exist" in str(error.get("message", ""))
    ):
        return "configuration"
    node_errors = body.get("node_errors")
    for entry in node_errors.values() if isinstance(node_errors, dict) else ():
        for err in (entry.get("errors") or []) if isinstance(entry, dict) else ():
            info = err.get("extra_info") if isinstance(err, dict) else None
            name = info.get("input_name") if isinstance(info, dict) else None
            if err.get("type") == "value_not_in_list" and str(name).endswith("_name"):
                return "configuration"
    return "permanent"
