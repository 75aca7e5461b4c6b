"""``GET /object_info`` of the fake ComfyUI, in the shape captured from ComfyUI 0.3.64
(``object_info_CheckpointLoaderSimple.json``: per class ``input.required`` maps each input
to ``[spec, options]``, a loader's spec being the list of files it has).

The classes are those of the bundled workflows plus the captured weight-free ones; each
combo input lists the literal values those workflows name, as a server with their models
installed would. ``missing_classes`` / ``missing_files`` take some away.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any, Final

from imagen_actors.backends.comfyui_workflow import bundled_names, load_workflow

# The captured entry's fields other than its inputs (the outputs are not checked).
_SHAPE: Final[dict[str, Any]] = {
    "output": [],
    "output_is_list": [],
    "output_name": [],
    "python_module": "nodes",
    "category": "loaders",
    "output_node": False,
}


def _bundled_nodes() -> dict[str, dict[str, list[str]]]:
    nodes: dict[str, dict[str, list[str]]] = {
        name: {} for name in ("EmptyImage", "ImageBlur", "SaveImage", "SaveImageWebsocket")
    }
    for wf_name in bundled_names():
        graph = load_workflow(wf_name, instance="fake").graph
        for node in graph.values():
            inputs = nodes.setdefault(str(node["class_type"]), {})
            for key, value in node.get("inputs", {}).items():
                if isinstance(value, str) and "${" not in value:
                    inputs.setdefault(key, []).append(value)
    return nodes


BUNDLED_NODES: Final = _bundled_nodes()
# Inputs that are lists of choices (combos) on the real server; other strings are STRING.
_COMBO_INPUTS: Final = frozenset({"scheduler", "type", "weight_dtype"})


def _spec(name: str, values: list[str], missing_files: Set[str]) -> list[Any]:
    if name.endswith("_name") or name in _COMBO_INPUTS:
        return [sorted(set(values) - set(missing_files)), {}]
    return ["STRING", {}]


def object_info(
    missing_classes: Set[str] = frozenset(), missing_files: Set[str] = frozenset()
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for class_type, inputs in BUNDLED_NODES.items():
        if class_type in missing_classes:
            continue
        required = {name: _spec(name, values, missing_files) for name, values in inputs.items()}
        out[class_type] = {**_SHAPE, "name": class_type, "display_name": class_type}
        out[class_type]["input"] = {"required": required, "optional": {}}
    return out
