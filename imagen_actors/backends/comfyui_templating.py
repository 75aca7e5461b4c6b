"""Whole-value placeholders in a parsed JSON tree (ComfyUI workflow templates).

A JSON string whose entire value is ``"${name}"`` is replaced by the value given for
``name``, keeping that value's JSON type: ``"${seed}"`` becomes the int ``42``, not the
string ``"42"``. A placeholder inside a longer string (``"photo of ${prompt}"``) is left
exactly as written. The tree is walked and rebuilt; text is never substituted into JSON
source, so user text with quotes, braces or ``${...}`` of its own is inserted verbatim.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from imagen_actors.core.errors import ImagenError

# name -> the Python type its value must have (float also accepts an int, converted).
PLACEHOLDERS: Final[dict[str, type]] = {
    "prompt": str,
    "negative": str,
    "seed": int,
    "cfg": float,
    "width": int,
    "height": int,
    "steps": int,
}

_KIND: Final[dict[type, str]] = {str: "a string", int: "an integer", float: "a number"}

_WHOLE: Final = re.compile(r"\$\{([^{}]*)\}")

Path = tuple[str | int, ...]


class TemplateError(ImagenError):
    """A template names an unknown placeholder, or a value has the wrong type."""


def describe(path: Path) -> str:
    """``("6", "inputs", "text")`` -> ``node 6 input text``; other paths as ``a.b[0]``."""
    if len(path) >= 3 and path[1] == "inputs" and isinstance(path[0], str):
        rest = _dotted(path[3:])
        return f"node {path[0]} input {path[2]}{rest}"
    return _dotted(path).lstrip(".") or "(root)"


def _dotted(path: Path) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def placeholder_name(value: object) -> str | None:
    """The name if ``value`` is a string that is exactly one ``${name}``; else None."""
    if not isinstance(value, str):
        return None
    match = _WHOLE.fullmatch(value)
    return match.group(1) if match else None


def find_placeholders(tree: Any) -> Iterator[tuple[Path, str]]:
    """Every whole-value placeholder in ``tree`` as ``(path, name)``, in document order."""
    yield from _find(tree, ())


def _find(node: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _find(child, (*path, str(key)))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _find(child, (*path, index))
    else:
        name = placeholder_name(node)
        if name is not None:
            yield path, name


def check_template(tree: Any) -> set[str]:
    """The placeholder names ``tree`` uses; TemplateError for the first unknown one."""
    used: set[str] = set()
    for path, name in find_placeholders(tree):
        if name not in PLACEHOLDERS:
            guess = difflib.get_close_matches(name, PLACEHOLDERS, n=1)
            fix = f"did you mean ${{{guess[0]}}}? " if guess else ""
            raise TemplateError(
                f"unknown placeholder ${{{name}}} at {describe(path)}; {fix}use one of "
                f"{', '.join('${' + n + '}' for n in PLACEHOLDERS)}"
            )
        used.add(name)
    return used


def kind(expected: type) -> str:
    """``int`` -> ``an integer``: how messages name a placeholder's JSON type."""
    return _KIND[expected]


def check_value(name: str, value: object, *, where: str = "") -> object:
    """``value`` coerced to the JSON type ``name`` needs; TemplateError if it cannot be."""
    expected = PLACEHOLDERS.get(name)
    at = f" at {where}" if where else ""
    if expected is None:
        raise TemplateError(f"unknown placeholder ${{{name}}}{at}")
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, expected):
        raise TemplateError(
            f"placeholder ${{{name}}}{at} needs {_KIND[expected]}, "
            f"got {type(value).__name__} {value!r}"
        )
    return value


def render(tree: Any, values: Mapping[str, object]) -> Any:
    """A new tree with every whole-value placeholder replaced from ``values``.

    Raises TemplateError naming the placeholder and where it sits when it is unknown,
    has no value, or its value has the wrong type. ``tree`` is not modified.
    """
    return _render(tree, values, ())


def _render(node: Any, values: Mapping[str, object], path: Path) -> Any:
    if isinstance(node, dict):
        return {key: _render(child, values, (*path, str(key))) for key, child in node.items()}
    if isinstance(node, list):
        return [_render(child, values, (*path, i)) for i, child in enumerate(node)]
    name = placeholder_name(node)
    if name is None:
        return node
    where = describe(path)
    if name not in PLACEHOLDERS:
        raise TemplateError(f"unknown placeholder ${{{name}}} at {where}")
    if name not in values or values[name] is None:
        raise TemplateError(f"no value for placeholder ${{{name}}} at {where}")
    return check_value(name, values[name], where=where)
