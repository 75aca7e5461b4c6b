from __future__ import annotations

import json
from typing import Any

import pytest

from imagen_actors.backends.comfyui_templating import (
    TemplateError,
    check_template,
    describe,
    find_placeholders,
    render,
)

VALUES: dict[str, object] = {
    "prompt": "a fox",
    "negative": "blurry",
    "seed": 42,
    "cfg": 1.0,
    "width": 768,
    "height": 512,
    "steps": 4,
}

GRAPH: dict[str, Any] = {
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "${prompt}", "clip": ["30", 1]}},
    "27": {
        "class_type": "EmptySD3LatentImage",
        "inputs": {"width": "${width}", "height": "${height}", "batch_size": 1},
    },
    "31": {
        "class_type": "KSampler",
        "inputs": {
            "seed": "${seed}",
            "steps": "${steps}",
            "cfg": "${cfg}",
            "negative_text": "${negative}",
            "denoise": 1.0,
        },
    },
}


@pytest.mark.parametrize(
    ("template", "values", "expected"),
    [
        ("${prompt}", {"prompt": "a fox"}, "a fox"),
        ("${negative}", {"negative": ""}, ""),
        ("${seed}", {"seed": 7}, 7),
        ("${cfg}", {"cfg": 3.5}, 3.5),
        ("${cfg}", {"cfg": 4}, 4.0),
        ("${width}", {"width": 1024}, 1024),
        ("${height}", {"height": 768}, 768),
        ("${steps}", {"steps": 20}, 20),
        ("photo of ${prompt}", {"prompt": "x"}, "photo of ${prompt}"),
        ("${seed} ", {"seed": 1}, "${seed} "),
        ("$prompt", {}, "$prompt"),
        ("{prompt}", {}, "{prompt}"),
        (12, {}, 12),
        (None, {}, None),
        (["30", 1], {}, ["30", 1]),
    ],
)
def test_render_values(template: Any, values: dict[str, object], expected: Any) -> None:
    """Whole-value placeholders take the value's type; anything else is left as written."""
    result = render({"n": {"inputs": {"v": template}}}, values)
    assert result == {"n": {"inputs": {"v": expected}}}
    assert type(result["n"]["inputs"]["v"]) is type(expected)


@pytest.mark.parametrize(
    "text",
    [
        'say "hi"',
        'braces {} and {"a": 1}',
        "${prompt}",
        "${seed}",
        "back\\slash \n newline \u00e9 \U0001f98a",
        '","seed": 1, "x": "',
    ],
)
def test_user_text_inserted_verbatim(text: str) -> None:
    """User text with quotes, braces or placeholders of its own is inserted as-is, once."""
    out = render(GRAPH, {**VALUES, "prompt": text, "negative": text})
    assert out["6"]["inputs"]["text"] == text
    assert out["31"]["inputs"]["negative_text"] == text
    assert out["31"]["inputs"]["seed"] == 42
    assert json.loads(json.dumps(out))["6"]["inputs"]["text"] == text


def test_render_full_graph_keeps_links_and_types() -> None:
    """A whole graph renders with links untouched and ints/floats as JSON numbers."""
    out = render(GRAPH, VALUES)
    assert out["6"]["inputs"] == {"text": "a fox", "clip": ["30", 1]}
    assert out["27"]["inputs"] == {"width": 768, "height": 512, "batch_size": 1}
    assert out["31"]["inputs"]["cfg"] == 1.0 and isinstance(out["31"]["inputs"]["cfg"], float)
    assert GRAPH["6"]["inputs"]["text"] == "${prompt}"  # the template is not modified


@pytest.mark.parametrize(
    ("tree", "values", "message"),
    [
        (
            {"6": {"inputs": {"text": "${promt}"}}},
            VALUES,
            "unknown placeholder ${promt} at node 6 input text",
        ),
        (
            {"31": {"inputs": {"seed": "${seed}"}}},
            {**VALUES, "seed": "abc"},
            "placeholder ${seed} at node 31 input seed needs an integer, got str 'abc'",
        ),
        (
            {"31": {"inputs": {"seed": "${seed}"}}},
            {**VALUES, "seed": True},
            "${seed} at node 31 input seed needs an integer, got bool",
        ),
        (
            {"31": {"inputs": {"cfg": "${cfg}"}}},
            {**VALUES, "cfg": "1.0"},
            "${cfg} at node 31 input cfg needs a number, got str",
        ),
        (
            {"6": {"inputs": {"text": "${prompt}"}}},
            {**VALUES, "prompt": 5},
            "${prompt} at node 6 input text needs a string, got int 5",
        ),
        (
            {"27": {"inputs": {"width": "${width}"}}},
            {**VALUES, "width": 1.5},
            "${width} at node 27 input width needs an integer, got float",
        ),
        (
            {"31": {"inputs": {"steps": "${steps}"}}},
            {**VALUES, "steps": None},
            "no value for placeholder ${steps} at node 31 input steps",
        ),
        (
            {"31": {"inputs": {"steps": "${steps}"}}},
            {"prompt": "x"},
            "no value for placeholder ${steps} at node 31 input steps",
        ),
        ({"a": [{"b": "${nope}"}]}, VALUES, "unknown placeholder ${nope} at a[0].b"),
    ],
)
def test_render_errors(tree: Any, values: dict[str, object], message: str) -> None:
    """Unknown placeholders, missing values and wrong types name the placeholder and spot."""
    with pytest.raises(TemplateError) as info:
        render(tree, values)
    assert message in str(info.value)


def test_check_template_lists_used_names() -> None:
    """check_template returns the names used and rejects an unknown one by location."""
    assert check_template(GRAPH) == {
        "prompt",
        "negative",
        "seed",
        "cfg",
        "width",
        "height",
        "steps",
    }
    with pytest.raises(TemplateError, match=r"\$\{size\} at node 9 input w"):
        check_template({"9": {"inputs": {"w": "${size}"}}})


def test_find_placeholders_and_describe() -> None:
    """Placeholders are reported with their path; paths read as node/input when they can."""
    found = dict(find_placeholders({"6": {"inputs": {"text": "${prompt}", "x": "a ${seed}"}}}))
    assert found == {("6", "inputs", "text"): "prompt"}
    assert describe(("6", "inputs", "text")) == "node 6 input text"
    assert describe(("6", "inputs", "list", 1)) == "node 6 input list[1]"
    assert describe(("meta", 0, "k")) == "meta[0].k"
