"""Files shipped beside the code: SQL migrations and ComfyUI workflow templates.

In a wheel they live under ``imagen_actors/_data/``; in a source checkout (editable
install, tests) they are the top-level ``schema/`` and ``workflows/`` folders.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_dir(name: str) -> Path:
    packaged = resources.files("imagen_actors") / "_data" / name
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parents[2] / name
    if source.is_dir():
        return source
    raise FileNotFoundError(
        f"bundled folder {name!r} is missing from this installation of imagen-actors; "
        "reinstall the package"
    )


def schema_dir() -> Path:
    return data_dir("schema")


def workflows_dir() -> Path:
    return data_dir("workflows")
