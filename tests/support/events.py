"""Event builders for tests that fold or decide without a database."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from imagen_actors.core import events as ev


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


def generated(job_id: uuid.UUID, at: datetime, *, seed: int = 7) -> ev.GenerationSucceeded:
    """A finished mock generation (what the Executor hands to ``generation_succeeded``)."""
    return ev.GenerationSucceeded(
        job_id=job_id,
        occurred_at=at,
        actor="executor",
        backend="mock",
        model="mock-1",
        seed=seed,
        mime="image/png",
        bytes=10,
        sha256="0" * 64,
        latency_ms=5,
    )
