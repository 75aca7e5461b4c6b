"""Runtime SQL, kept as data in ``*.sql`` files here and loaded once by name."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Final

_HEADER: Final = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_named_blocks(text: str) -> dict[str, str]:
    """Split a file of ``-- name: foo`` blocks into {name: sql}."""
    parts = _HEADER.split(text)
    blocks: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in blocks:
            raise ValueError(f"query {name!r} is defined twice in queries.sql")
        blocks[name] = body.strip()
    return blocks


@cache
def queries() -> dict[str, str]:
    """Every named block of every ``*.sql`` file here; a name may be defined only once."""
    merged: dict[str, str] = {}
    folder = resources.files(__package__)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, sql in parse_named_blocks(entry.read_text(encoding="utf-8")).items():
            if name in merged:
                raise ValueError(f"query {name!r} is defined in two .sql files")
            merged[name] = sql
    return merged


def query(name: str) -> str:
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in imagen_actors/sql/*.sql") from None
