"""Broken ComfyUI workflow templates: refused at load (so ``config check`` and worker start
catch them, not the first job) naming backends.<name>.workflow, the file, the node or
placeholder, and the fix."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imagen_actors.backends.comfyui_workflow import load_workflow
from imagen_actors.cli import exitcodes
from imagen_actors.cli.main import main
from imagen_actors.config.bundled import workflows_dir
from imagen_actors.core.errors import ConfigError
from tests.badinput import badfiles

KEY = "backends.flux.workflow"
Graph = dict[str, Any]


def bundled() -> Graph:
    graph: Graph = json.loads((workflows_dir() / "flux1-schnell.json").read_text())
    return graph


def with_input(node: str, name: str, value: object) -> Callable[[Graph], Graph]:
    def edit(g: Graph) -> Graph:
        g[node]["inputs"][name] = value
        return g

    return edit


def without(*nodes: str) -> Callable[[Graph], Graph]:
    def edit(g: Graph) -> Graph:
        return {k: v for k, v in g.items() if k not in nodes}

    return edit


def with_meta(meta: object) -> Callable[[Graph], Graph]:
    def edit(g: Graph) -> Graph:
        g["_imagen"] = meta
        return g

    return edit


def text(source: str) -> Callable[[Graph], str]:
    return lambda _g: source


CASES = [
    pytest.param(text('{"6": {"class_type": "X", "inputs": {}},\n}'),
                 "is not valid JSON: Expecting property name enclosed in double quotes at "
                 "line 2 column 1", "fix the JSON there, or export the workflow again from "
                 "ComfyUI with Save (API)", id="json-trailing-comma"),
    pytest.param(text('{"6": {"class_type": "X",\n  "inputs": {"text": "${prompt}"'),
                 "is not valid JSON: Expecting ',' delimiter at line 2 column 33",
                 "fix the JSON there", id="json-truncated"),
    pytest.param(text("[]"), "must hold a JSON object of nodes",
                 "export it from ComfyUI with Save (API)", id="not-an-object"),
    pytest.param(text('{"_imagen": {"steps": 4}}'), "has no nodes",
                 "export the workflow from ComfyUI with Save (API)", id="no-nodes"),
    pytest.param(with_input("6", "text", "${promt}"),
                 "unknown placeholder ${promt} at node 6 input text",
                 "did you mean ${prompt}? use one of ${prompt}, ${negative}", id="placeholder-typo"),
    pytest.param(with_input("27", "batch_size", "${batch}"),
                 "unknown placeholder ${batch} at node 27 input batch_size",
                 "use one of ${prompt}, ${negative}, ${seed}", id="placeholder-unknown"),
    pytest.param(with_input("27", "width", "${prompt}"),
                 "${prompt} at node 27 input width gives a string, but input width takes an "
                 "integer", "use ${width} there", id="string-where-int"),
    pytest.param(with_input("6", "text", "${seed}"),
                 "${seed} at node 6 input text gives an integer, but input text takes a string",
                 "use ${prompt} or ${negative} there", id="int-where-string"),
    pytest.param(with_input("31", "steps", "${cfg}"),
                 "${cfg} at node 31 input steps gives a number, but input steps takes an integer",
                 "use ${steps} there", id="float-where-int"),
    pytest.param(with_input("6", "text", "a photo of ${prompt}"), 'has no "${prompt}" input',
                 'set the text input of the positive CLIPTextEncode node to "${prompt}"',
                 id="prompt-not-whole-value"),
    pytest.param(without("9"), "has no output node (SaveImage or PreviewImage)",
                 "add a SaveImage node fed by the VAEDecode node's IMAGE output",
                 id="no-save-node"),
    pytest.param(without("30"), "node 6 input clip links to node 30, which is not in the "
                 "workflow", "add that node or fix the link", id="dangling-link"),
    pytest.param(lambda g: {**g, "8": {"inputs": {"samples": ["31", 0]}}},
                 'node 8 needs "class_type" (string) and "inputs" (object)',
                 "is this an API-format export (Save (API))?", id="node-without-class"),
    pytest.param(with_meta({"steps": "four"}),
                 "_imagen.steps must be a whole number or null, got a string 'four'",
                 'write it like "_imagen": {"model": "flux1-schnell-fp8", "steps": 4',
                 id="meta-wrong-type"),
    pytest.param(with_meta({"model": "flux", "stepz": 4}), "_imagen.stepz is not a known setting",
                 "did you mean _imagen.steps? rename or remove it", id="meta-typo"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "names", "fix"), CASES)
def test_bad_workflow_names_template_node_and_fix(
    tmp_path: Path, edit: Callable[[Graph], Graph | str], names: str, fix: str
) -> None:
    edited = edit(copy.deepcopy(bundled()))
    path = tmp_path / "mine.json"
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited, indent=1))
    with pytest.raises(ConfigError) as info:
        load_workflow(str(path), instance="flux")
    message = str(info.value)
    assert info.value.key == KEY and message.startswith(f"{KEY}: {path}")
    assert names in message and fix in message


def test_unknown_bundled_name_lists_the_bundled_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_workflow("flux1-schnel", instance="flux")
    assert str(info.value).startswith(f"{KEY}: no bundled workflow 'flux1-schnel' (bundled: ")
    assert "flux1-schnell" in str(info.value) and "or give a path to a JSON file" in str(info.value)


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "gone.json"
    with pytest.raises(ConfigError, match=rf"^{KEY}: {missing} does not exist; check the path"):
        load_workflow(str(missing), instance="flux")


@pytest.mark.parametrize(("make", "problem"), badfiles.file_cases())
async def test_a_file_that_is_no_workflow_is_refused_at_once(
    bad_path: Path, make: badfiles.Maker, problem: str
) -> None:
    """The config's file rules (config.files) apply to a workflow path too: refused within
    the bound by the rule, naming the key and the file."""
    make(bad_path)
    with pytest.raises(ConfigError) as info:
        await badfiles.within_bound(lambda: load_workflow(str(bad_path), instance="flux"))
    message = str(info.value)
    assert info.value.key == KEY and message.startswith(f"{KEY}: {bad_path}")
    assert problem in message


def test_config_check_exits_3_on_a_bad_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same error through `imagen-actors config check`, exit 3."""
    workflow = tmp_path / "mine.json"
    workflow.write_text(json.dumps(with_input("27", "height", "${negative}")(bundled())))
    cfg = tmp_path / "imagen.yaml"
    cfg.write_text(
        f"backends:\n  mock: {{type: mock}}\n  flux: {{type: comfyui, workflow: '{workflow}'}}\n"
    )
    assert main(["config", "check", "--config", str(cfg)]) == exitcodes.CONFIG
    err = capsys.readouterr().err
    assert f"{KEY}: {workflow}: ${{negative}} at node 27 input height gives a string" in err
    assert "use ${height} there" in err


def test_config_check_exits_3_on_a_fifo_workflow(tmp_path: Path) -> None:
    """A workflow path naming a FIFO: the real CLI exits 3 at once instead of hanging."""
    fifo = tmp_path / "mine.json"
    os.mkfifo(fifo)
    cfg = tmp_path / "imagen.yaml"
    cfg.write_text(
        f"backends:\n  mock: {{type: mock}}\n  flux: {{type: comfyui, workflow: '{fifo}'}}\n"
    )
    done = badfiles.cli("config", "check", "--config", str(cfg))
    assert done.returncode == exitcodes.CONFIG, done.stderr
    assert f"{KEY}: {fifo} is a FIFO (named pipe), not a regular file" in done.stderr
