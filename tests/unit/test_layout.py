"""The package layout's import boundaries, read from the source with ``ast`` (nothing imported).

- ``core/`` is pure: no Trio, asyncio bridge, database driver or HTTP client, and no
  ``imagen_actors`` module outside ``core/``;
- only ``db/`` talks to asyncpg;
- no module is over 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "imagen_actors"
CORE_FORBIDDEN = frozenset({"trio", "trio_asyncio", "asyncpg", "httpx", "httpx_ws", "anyio"})
MAX_LINES = 400


def modules(under: Path = PACKAGE) -> list[Path]:
    return sorted(under.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, *, located_at: Path | None = None) -> set[str]:
    """Every absolute module name ``path`` imports, anywhere in the file (also inside functions
    and ``if TYPE_CHECKING:``), with relative imports resolved against the file's package
    (or against ``located_at``'s, for a file that is not in the package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = located_at or path
    package = _module_name(where).split(".")
    if where.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                assert node.module is not None
                prefix = node.module
            names.add(prefix)
            # `from imagen_actors import db` imports the subpackage db.
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


def _is_core(name: str) -> bool:
    return name == "imagen_actors.core" or name.startswith("imagen_actors.core.")


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(PACKAGE.parent)) for p in paths]


def test_the_parser_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checks below rely on imported_modules finding plain, from, relative, nested and
    TYPE_CHECKING imports: prove it on a file that has each, read as if it lived in core/."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import trio\n"
        "from typing import TYPE_CHECKING\n"
        "from ..db import gateway\n"
        "from . import events\n"
        "if TYPE_CHECKING:\n"
        "    import asyncpg.pool\n"
        "def f() -> None:\n"
        "    from httpx import AsyncClient\n",
        encoding="utf-8",
    )
    names = imported_modules(sample, located_at=PACKAGE / "core" / "sample.py")
    assert {"trio", "asyncpg.pool", "httpx", "imagen_actors.db.gateway"} <= names
    assert "imagen_actors.core.events" in names
    assert not _is_core("imagen_actors.db.gateway")
    assert _is_core("imagen_actors.core.events")


@pytest.mark.parametrize("path", modules(PACKAGE / "core"), ids=_ids(modules(PACKAGE / "core")))
def test_core_is_pure(path: Path) -> None:
    """core/ imports no I/O library and nothing of ours outside core/."""
    bad = sorted(
        name
        for name in imported_modules(path)
        if _top(name) in CORE_FORBIDDEN or (_top(name) == "imagen_actors" and not _is_core(name))
    )
    assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {bad}: core/ must stay pure"


def test_only_db_imports_asyncpg() -> None:
    db = PACKAGE / "db"
    offenders = sorted(
        str(path.relative_to(PACKAGE.parent))
        for path in modules()
        if db not in path.parents and any(_top(n) == "asyncpg" for n in imported_modules(path))
    )
    assert not offenders, f"asyncpg is imported outside imagen_actors/db/: {offenders}"
    users = [p for p in modules(db) if any(_top(n) == "asyncpg" for n in imported_modules(p))]
    assert users, "no module under db/ imports asyncpg: the check above would be vacuous"


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in modules()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by what each part does): {long}"
