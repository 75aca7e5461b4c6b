"""The backend's run, holding the lease: a sibling task renews it and persists throttled
progress (GenerationProgress) while the backend works, and the run a backend starts on its
own service is recorded the moment its id is known (PredictionCreated); the Executor's one
call."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from imagen_actors.backends.base import GenerationRequest, GenerationResult
from imagen_actors.core import decisions as dc
from imagen_actors.db.ports import JobStore
from imagen_actors.worker.actors.lease import holding_lease

if TYPE_CHECKING:
    from imagen_actors.worker.actors.executor import ExecutorSettings

ProgressObserver = Callable[[uuid.UUID, int, int], None]


@attrs.define
class _Progress:
    step: int = 0
    total: int = 0
    persisted_step: int = 0


async def generate_with_lease(
    gateway: JobStore,
    settings: ExecutorSettings,
    attempt: int,
    generate: Callable[..., object],
    request: GenerationRequest,
    observer: ProgressObserver | None,
) -> GenerationResult:
    """Run the backend while a sibling task renews the lease and persists progress.

    If the lease is lost meanwhile the generation is cancelled and LeaseLostError raised.
    """
    assert request.job_id is not None
    job_id = request.job_id
    progress = _Progress()

    def on_progress(step: int, total: int) -> None:
        progress.step, progress.total = step, total
        if observer is not None:
            observer(job_id, step, total)

    async def renew() -> None:
        # A renewal that also carries progress when a step was reached since the last one.
        if progress.step != progress.persisted_step:
            step, total = progress.step, progress.total
            await gateway.transition(
                job_id,
                dc.record_progress(
                    settings.worker_id, step, total, settings.lease_s, attempt=attempt
                ),
            )
            progress.persisted_step = step
        else:
            await gateway.transition(
                job_id, dc.extend_lease(settings.worker_id, settings.lease_s, attempt=attempt)
            )

    async def on_created(external_id: str) -> None:
        # Its own short transaction, before the backend waits on the run: a worker that dies
        # from here on leaves the id for the next attempt to resume.
        await gateway.transition(
            job_id, dc.prediction_created(settings.worker_id, external_id, attempt=attempt)
        )

    async def run() -> GenerationResult:
        out: GenerationResult = await generate(  # type: ignore[misc]
            request, on_progress, created=on_created
        )
        return out

    return await holding_lease(
        gateway,
        job_id,
        run,
        worker_id=settings.worker_id,
        attempt=attempt,
        lease_s=settings.lease_s,
        actor="executor",
        renew=renew,
        interval_s=min(settings.lease_s / 3, settings.progress_persist_interval_s),
        notice=settings.cancel_notice,
    )
