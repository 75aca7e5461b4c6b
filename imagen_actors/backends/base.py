"""The Backend protocol every adapter implements, and the data it exchanges."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import attrs
import msgspec

from imagen_actors.config.explain import explain

C = TypeVar("C")

ProgressCallback = Callable[[int, int], None]
"""``progress(step, total)``: called from the Trio task running ``generate``; must not block."""


@attrs.frozen(kw_only=True)
class GenerationRequest:
    prompt: str  # what the backend renders (user prompt with the style preset applied)
    user_prompt: str  # what the user typed; hashed for usage, used for slugs
    width: int
    height: int
    seed: int
    steps: int | None = None
    negative_prompt: str | None = None
    style: str | None = None
    opts: dict[str, Any] = attrs.field(factory=dict)
    job_id: uuid.UUID | None = None


@attrs.frozen(kw_only=True)
class GenerationResult:
    image: bytes
    mime: str
    model: str
    seed: int
    latency_ms: int
    cost_usd_estimate: float = 0.0
    metadata: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class BackendStatus:
    ok: bool
    detail: str  # "ok", "not configured (set REPLICATE_API_TOKEN)", "unreachable (...)"


class Backend(Protocol):
    name: str  # the configured instance name ("flux-schnell-local")
    type: str  # the adapter type ("comfyui")

    async def generate(
        self, request: GenerationRequest, progress: ProgressCallback
    ) -> GenerationResult: ...

    async def check(self) -> BackendStatus: ...

    async def aclose(self) -> None: ...


def adapter_config(block: dict[str, Any], cls: type[C], *, instance: str) -> C:
    """Validate one ``backends.<instance>`` block; errors name the key path."""
    body = {k: v for k, v in block.items() if k != "type"}
    try:
        return msgspec.convert(body, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise explain(exc, root=cls, raw=body, prefix=f"backends.{instance}") from exc
