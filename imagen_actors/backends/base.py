"""The Backend protocol every adapter implements, and the data it exchanges."""

from __future__ import annotations

import io
import ipaddress
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import attrs
import msgspec
from PIL import Image, UnidentifiedImageError

from imagen_actors.config.explain import explain
from imagen_actors.config.slots import SHARED_KEYS
from imagen_actors.core.fold import ExternalRun
from imagen_actors.core.records import Checked

C = TypeVar("C")

ProgressCallback = Callable[[int, int], None]
"""``progress(step, total)``: called from the Trio task running ``generate``; must not block."""

CreatedCallback = Callable[[str], Awaitable[None]]
"""``await created(external_id)``: a backend that starts a paid run on its own service (a
Replicate prediction) awaits this as soon as it knows the run's id, before waiting on it; the
Executor records PredictionCreated there (its own short transaction), so a later attempt can
resume the run (``GenerationRequest.resume``). If it raises, the backend stops the run."""


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
    # The run an earlier attempt of this job started on this backend (its PredictionCreated):
    # a backend that can resume it should, instead of paying for a new one.
    resume: ExternalRun | None = None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def image_size(image: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the image's header (Pillow reads no pixels); None if unreadable."""
    # A PNG states its size in the first chunk (IHDR, bytes 16-24): read it without Pillow,
    # whose open costs more than the rest of a 0 ms job's bookkeeping in Python.
    if image[:8] == _PNG_SIGNATURE and image[12:16] == b"IHDR" and len(image) >= 24:
        width, height = int.from_bytes(image[16:20], "big"), int.from_bytes(image[20:24], "big")
        if width > 0 and height > 0:
            return width, height
    try:
        with Image.open(io.BytesIO(image)) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return int(width), int(height)


def _width(result: GenerationResult) -> int | None:
    size = image_size(result.image)
    return size[0] if size else None


def _height(result: GenerationResult) -> int | None:
    size = image_size(result.image)
    return size[1] if size else None


@attrs.frozen(kw_only=True)
class GenerationResult:
    image: bytes
    mime: str
    model: str
    seed: int
    latency_ms: int
    cost_usd_estimate: float = 0.0
    metadata: dict[str, Any] = attrs.field(factory=dict)
    # The size of the image as made, read from its bytes: latent workflows floor the
    # requested size (to multiples of 8 or 16) and hosted models pick from aspect ratios.
    width: int | None = attrs.field(default=attrs.Factory(_width, takes_self=True))
    height: int | None = attrs.field(default=attrs.Factory(_height, takes_self=True))

    def recorded_metadata(self) -> dict[str, Any]:
        """What GenerationSucceeded records: the backend's metadata plus the real size."""
        size = {"width": self.width, "height": self.height} if self.width and self.height else {}
        return {**self.metadata, **size}


BackendStatus = Checked


class Backend(Protocol):
    name: str  # the configured instance name ("flux-schnell-local")
    type: str  # the adapter type ("comfyui")

    async def generate(
        self,
        request: GenerationRequest,
        progress: ProgressCallback,
        *,
        created: CreatedCallback | None = None,
    ) -> GenerationResult: ...

    async def check(self) -> BackendStatus:
        """The preflight: can this instance work now? Runs at worker start, as the health
        probe, in ``backends`` and ``config check``. Never raises for a fault it finds."""
        ...

    async def aclose(self) -> None: ...


def trust_env_for(url: str) -> bool:
    """Whether an HTTP client for ``url`` may take proxies from the environment.

    Not for loopback: with ``HTTP_PROXY``/``ALL_PROXY`` set, httpx would send
    ``127.0.0.1``/``localhost`` traffic to the proxy, and the failure would then blame
    the backend.
    """
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def adapter_config(block: dict[str, Any], cls: type[C], *, instance: str) -> C:
    """Validate one ``backends.<instance>`` block; errors name the key path."""
    body = {k: v for k, v in block.items() if k not in SHARED_KEYS}
    try:
        return msgspec.convert(body, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise explain(exc, root=cls, raw=body, prefix=f"backends.{instance}") from exc
