"""Runtime SQL, kept as data in ``queries.sql`` and loaded once by name."""

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
    text = resources.files(__package__).joinpath("queries.sql").read_text(encoding="utf-8")
    return parse_named_blocks(text)


def query(name: str) -> str:
    try:
        return queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in imagen_actors/sql/queries.sql") from None
