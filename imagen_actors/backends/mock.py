"""A real PNG from Pillow, deterministic from prompt + seed, with latency and failure knobs.

Used by the zero-config default, tests and benchmarks. Failure injection:
``fail_rate`` (0..1, seeded by job and attempt so runs repeat) with ``fail_class``, and
prompt directives ``[fail:transient]``, ``[fail:permanent]`` and ``[fail-once]`` (the first
attempt per job in this process fails transiently).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import time
from typing import Annotated, Any, Final, Literal

import msgspec
import trio
from PIL import Image, ImageDraw

from imagen_actors.backends.base import (
    BackendStatus,
    CreatedCallback,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    adapter_config,
)
from imagen_actors.core.errors import GenerationError

MODEL: Final = "mock-gradient-v1"
# Encoding a large PNG takes tens of ms; off the event loop above this many pixels.
THREAD_ABOVE_PIXELS: Final = 256 * 256


class MockConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    latency_ms: Annotated[int, msgspec.Meta(ge=0)] = 0
    steps: Annotated[int, msgspec.Meta(ge=1, le=200)] = 4
    fail_rate: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0
    fail_class: Literal["transient", "permanent"] = "transient"
    max_size: Annotated[int, msgspec.Meta(ge=64)] = 4096
    cost_usd: Annotated[float, msgspec.Meta(ge=0.0)] = 0.0
    # Building this instance fails with OSError(EMFILE), as a lazy import does when the
    # process is out of file descriptors (tests of the Executor's resilience).
    emfile_on_build: bool = False


def render_png(prompt: str, seed: int, width: int, height: int) -> bytes:
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    top, bottom = digest[0:3], digest[3:6]
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / max(1, height - 1)
        color = tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        draw.line([(0, y), (width, y)], fill=color)
    r = max(2, min(width, height) // 6)
    cx, cy = digest[6] * width // 256, digest[7] * height // 256
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(digest[8:11]))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=1)
    return out.getvalue()


class MockBackend:
    type = "mock"

    def __init__(self, name: str, cfg: MockConfig) -> None:
        self.name = name
        self._cfg = cfg
        self._failed_once: set[Any] = set()
        self._calls = 0

    async def generate(
        self,
        request: GenerationRequest,
        progress: ProgressCallback,
        *,
        created: CreatedCallback | None = None,  # nothing external to resume
    ) -> GenerationResult:
        started = time.perf_counter()
        cfg = self._cfg
        if max(request.width, request.height) > cfg.max_size:
            raise GenerationError(
                f"size {request.width}x{request.height} is larger than backend {self.name!r} "
                f"allows ({cfg.max_size}px); ask for a smaller --size",
                error_class="permanent",
            )
        self._calls += 1
        steps = max(1, request.steps or cfg.steps)
        for step in range(1, steps + 1):
            if cfg.latency_ms:
                await trio.sleep(cfg.latency_ms / 1000 / steps)
            progress(step, steps)
        self._inject_failure(request)
        if request.width * request.height > THREAD_ABOVE_PIXELS:
            png = await trio.to_thread.run_sync(
                render_png, request.prompt, request.seed, request.width, request.height
            )
        else:
            png = render_png(request.prompt, request.seed, request.width, request.height)
        return GenerationResult(
            image=png,
            mime="image/png",
            model=MODEL,
            seed=request.seed,
            latency_ms=int((time.perf_counter() - started) * 1000),
            cost_usd_estimate=cfg.cost_usd,
            metadata={"steps": steps},
        )

    def _inject_failure(self, request: GenerationRequest) -> None:
        prompt = request.user_prompt
        if "[fail:permanent]" in prompt:
            raise GenerationError("injected permanent failure", error_class="permanent")
        if "[fail:transient]" in prompt:
            raise GenerationError("injected transient failure", error_class="transient")
        key = request.job_id or prompt
        if "[fail-once]" in prompt and key not in self._failed_once:
            self._failed_once.add(key)
            raise GenerationError("injected first-attempt failure", error_class="transient")
        if self._cfg.fail_rate > 0:
            roll = random.Random(f"{key}:{self._calls}").random()
            if roll < self._cfg.fail_rate:
                raise GenerationError(
                    f"injected failure (fail_rate {self._cfg.fail_rate})",
                    error_class=self._cfg.fail_class,
                )

    async def check(self) -> BackendStatus:
        return BackendStatus(True, "ok")

    async def aclose(self) -> None:
        return None


def build(name: str, block: dict[str, Any]) -> MockBackend:
    cfg = adapter_config(block, MockConfig, instance=name)
    if cfg.emfile_on_build:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
    return MockBackend(name, cfg)
