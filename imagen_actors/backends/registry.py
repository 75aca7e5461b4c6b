"""From a ``backends:`` block's ``type`` to the adapter that builds it."""

from __future__ import annotations

import importlib
from typing import Any, Final, Protocol

from imagen_actors.backends.base import Backend
from imagen_actors.config.settings import Config
from imagen_actors.core.errors import ConfigError

# type -> module exposing ``build(name, block) -> Backend``; imported only when used.
ADAPTERS: Final[dict[str, str]] = {
    "mock": "imagen_actors.backends.mock",
    "comfyui": "imagen_actors.backends.comfyui",
    "replicate": "imagen_actors.backends.replicate",
}


class _Builder(Protocol):
    def __call__(self, name: str, block: dict[str, Any]) -> Backend: ...


def build(name: str, block: dict[str, Any]) -> Backend:
    kind = block.get("type")
    module_name = ADAPTERS.get(str(kind))
    if module_name is None:
        raise ConfigError(
            f"backends.{name}.type {kind!r} is not a known adapter "
            f"(known: {', '.join(sorted(ADAPTERS))})"
        )
    builder: _Builder = importlib.import_module(module_name).build
    return builder(name, block)


def unknown_backend_message(name: str, cfg: Config) -> str:
    where = cfg.source if cfg.source != "built-in defaults" else "~/.config/imagen.yaml"
    return (
        f"unknown backend {name!r} (configured: {', '.join(sorted(cfg.backends))}); "
        f"set the job's backend to one of those, or add {name!r} under backends: in {where} "
        "and restart the worker"
    )


class Backends:
    """The configured instances, built lazily and closed together."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg
        self._built: dict[str, Backend] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self._cfg.backends)

    def get(self, name: str) -> Backend:
        """The instance called ``name``; ConfigError naming the configured ones if absent."""
        if name not in self._built:
            block = self._cfg.backends.get(name)
            if block is None:
                raise ConfigError(unknown_backend_message(name, self._cfg))
            self._built[name] = build(name, block)
        return self._built[name]

    async def aclose(self) -> None:
        for backend in self._built.values():
            await backend.aclose()
        self._built.clear()
