"""Event builders for tests that fold or decide without a database."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from imagen_actors.core import events as ev
from imagen_actors.core.fold import GenerationOutcome
from imagen_actors.core.records import ImageRow


def submitted(job_id: uuid.UUID, at: datetime, **fields: Any) -> ev.JobSubmitted:
    """A 64x64 mock job for "owl", as the INSERT trigger records it; ``fields`` override."""
    base: dict[str, Any] = {
        "owner_user_id": job_id,
        "prompt": "owl",
        "backend": "mock",
        "width": 64,
        "height": 64,
    }
    return ev.JobSubmitted(job_id=job_id, occurred_at=at, actor="database", **(base | fields))


def outcome(*, seed: int = 7) -> GenerationOutcome:
    """A finished mock generation (what the Executor hands to ``generation_succeeded``)."""
    return GenerationOutcome(
        backend="mock",
        model="mock-1",
        seed=seed,
        mime="image/png",
        bytes=10,
        sha256="0" * 64,
        latency_ms=5,
    )


def image_row(job_id: uuid.UUID, *, seed: int = 7) -> ImageRow:
    """The imagen.images row the Uploader writes for ``outcome(seed=seed)`` of ``job_id``."""
    made = outcome(seed=seed)
    return ImageRow(
        owner_user_id=job_id,
        job_id=job_id,
        prompt="owl",
        backend=made.backend,
        model=made.model,
        seed=made.seed,
        width=64,
        height=64,
        bucket="b",
        storage_path=f"2026-11-23/owl-{seed}.png",
        mime=made.mime,
        bytes=made.bytes,
        sha256=made.sha256,
        metadata={},
    )
