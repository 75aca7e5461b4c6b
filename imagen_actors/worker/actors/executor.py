"""Executor: one job at a time on one slot of a device (the GPU's one slot by default; see
worker/actors/slots); renews the lease while the backend works.

The claim already recorded GenerationStarted (decisions.claim). Emits throttled
GenerationProgress, then hands the image and its GenerationSucceeded decision to the
Uploader (which commits it with the key reservation, so the GPU takes the next job without
waiting for a commit), or records GenerationFailed with the error text and class, which
requeues (transient, attempts left) or fails the job. A dependency or configuration fault (the
backend is down or set up wrong; an OSError on the host) marks the backend unhealthy on the
``HealthBoard`` and requeues the job with its attempt refunded. A job whose earlier attempt
kept its image (the upload failed on a storage outage) re-uploads it: GenerationReused, no
render (the Uploader records GenerationReused).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

import attrs
import trio

from imagen_actors.backends.base import GenerationRequest
from imagen_actors.backends.registry import Backends
from imagen_actors.config import styles
from imagen_actors.core import decisions as dc
from imagen_actors.core import kept
from imagen_actors.core.errors import (
    CancelRequestedError,
    ConfigError,
    DatabaseError,
    ErrorClass,
    GenerationError,
    LeaseLostError,
    as_fault,
)
from imagen_actors.core.fold import ExternalRun, GenerationOutcome
from imagen_actors.db.ports import JobStore
from imagen_actors.observability.logs import job_fields
from imagen_actors.worker.actors.lease import holding_lease
from imagen_actors.worker.actors.messages import ClaimedWork, GeneratedImage
from imagen_actors.worker.actors.progress import ProgressObserver, generate_with_lease
from imagen_actors.worker.actors.slots import SlotBoard
from imagen_actors.worker.health import HealthBoard

# Final writes (the abort event) get this long even while the actor is being cancelled.
FINAL_WRITE_GRACE_S: Final = 5.0
log = logging.getLogger("imagen_actors.executor")


@attrs.frozen(kw_only=True)
class ExecutorSettings:
    worker_id: str
    lease_s: float
    progress_persist_interval_s: float = 5.0
    # Returns when a cancel may have been requested (worker/control.py); None: only the
    # lease renewals look, at their interval.
    cancel_notice: Callable[[], Awaitable[None]] | None = None


async def executor(
    gateway: JobStore,
    backends: Backends,
    settings: ExecutorSettings,
    *,
    device: str,
    slots: SlotBoard,
    uploads: trio.MemorySendChannel[GeneratedImage],
    observer: ProgressObserver | None = None,
    health: HealthBoard | None = None,
) -> None:
    """One slot of ``device``: take a job claimed for it, run it, hand the image on; again
    until intake stops."""
    while True:
        try:
            item = await slots.next_work(device)
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return  # intake stopped: nothing more will be claimed for us
        generated = await run_one(gateway, backends, settings, item, observer, health)
        if generated is not None:
            await hand_over(gateway, settings, uploads, generated)


async def hand_over(
    gateway: JobStore,
    settings: ExecutorSettings,
    uploads: trio.MemorySendChannel[GeneratedImage],
    generated: GeneratedImage,
) -> None:
    """Pass the image to the Uploader, holding the lease while the Uploader is busy; on
    abort before it is taken, give the job back instead of leaving it to lease expiry."""
    job_id, attempt = generated.submitted.job_id, generated.claimed.attempt
    try:
        # The Uploader is usually idle and waiting (a rendezvous channel): hand over at
        # once, with no lease to hold meanwhile.
        uploads.send_nowait(generated)
        return
    except trio.WouldBlock:
        pass
    delivered = False

    async def deliver() -> None:
        nonlocal delivered
        await uploads.send(generated)
        delivered = True

    try:
        await holding_lease(
            gateway,
            job_id,
            deliver,
            worker_id=settings.worker_id,
            attempt=attempt,
            lease_s=settings.lease_s,
            actor="executor",
            notice=settings.cancel_notice,
        )
    except CancelRequestedError as exc:
        await record_cancelled(gateway, settings.worker_id, job_id, exc, attempt, "executor")
    except LeaseLostError as exc:
        log.warning("job %s: %s; dropping its image", job_id, exc, extra=job_fields(job_id))
    finally:
        if not delivered and being_cancelled():
            await give_back(
                gateway,
                settings.worker_id,
                job_id,
                "worker shut down before the upload",
                attempt=attempt,
                actor="executor",
            )


async def run_one(
    gateway: JobStore,
    backends: Backends,
    settings: ExecutorSettings,
    item: ClaimedWork,
    observer: ProgressObserver | None = None,
    health: HealthBoard | None = None,
) -> GeneratedImage | None:
    sub = item.submitted
    worker, attempt = settings.worker_id, item.claimed.attempt

    async def fail(error: str, error_class: ErrorClass) -> None:
        fault = as_fault(error_class)
        if fault is not None and health is not None:
            health.mark_unhealthy(sub.backend, error, fault=fault)
        # Without a board (generate, compare) nobody waits: an outage fails the job.
        await _fail(
            gateway, worker, attempt, sub.job_id, error, error_class, wait=health is not None
        )

    try:
        try:
            if item.kept is not None:
                reused = await _reuse_kept(gateway, settings, item)
                if reused is not None:
                    return reused
            return await _generate(gateway, backends, settings, item, observer, fail)
        except OSError as exc:
            # Out of file descriptors (a lazy import, a socket), a full disk: the host's
            # trouble, not the job's. Requeue it (attempt refunded) and go on.
            log.warning(
                "job %s: %s on this host (%s); requeued",
                sub.job_id,
                type(exc).__name__,
                exc,
                extra=job_fields(sub.job_id),
            )
            await fail(f"{sub.backend}: host error {type(exc).__name__}: {exc}", "dependency")
            return None
    except CancelRequestedError as exc:
        await record_cancelled(gateway, worker, sub.job_id, exc, attempt, "executor")
        return None
    except LeaseLostError as exc:
        log.warning(
            "job %s: %s; dropping this attempt", sub.job_id, exc, extra=job_fields(sub.job_id)
        )
        return None
    finally:
        # Cancelled may arrive wrapped in an ExceptionGroup from an inner nursery, so ask
        # the scope rather than matching the exception: are we being cancelled?
        if being_cancelled():
            await give_back(
                gateway,
                worker,
                sub.job_id,
                "worker shut down mid-generation",
                attempt=attempt,
                actor="executor",
            )


async def _reuse_kept(
    gateway: JobStore, settings: ExecutorSettings, item: ClaimedWork
) -> GeneratedImage | None:
    """The image an earlier attempt kept, when its file still has the recorded sha256;
    None (render anew) when it is gone or changed."""
    assert item.kept is not None
    sub, (succeeded, path) = item.submitted, item.kept
    try:
        image = await trio.to_thread.run_sync(Path(path).read_bytes)
    except OSError as exc:
        log.info("job %s: kept image %s unreadable (%s); rendering again", sub.job_id, path, exc)
        return None
    if hashlib.sha256(image).hexdigest() != succeeded.sha256:
        log.warning("job %s: kept image %s changed; rendering again", sub.job_id, path)
        return None
    log.info("job %s: uploading the kept image %s", sub.job_id, path, extra=job_fields(sub.job_id))
    return GeneratedImage(
        submitted=sub,
        claimed=item.claimed,
        outcome=GenerationOutcome(**dc.outcome_fields(succeeded)),
        record=kept.reuse_generation(
            settings.worker_id, succeeded, path, settings.lease_s, attempt=item.claimed.attempt
        ),
        image=image,
        style=sub.style,
    )


async def _generate(
    gateway: JobStore,
    backends: Backends,
    settings: ExecutorSettings,
    item: ClaimedWork,
    observer: ProgressObserver | None,
    fail: Callable[[str, ErrorClass], Awaitable[None]],
) -> GeneratedImage | None:
    sub = item.submitted
    worker, attempt = settings.worker_id, item.claimed.attempt
    seed = item.started.seed
    try:
        backend = backends.get(sub.backend)
    except ConfigError as exc:
        # The instance cannot be built here (a missing token, a bad block): this host's
        # configuration, not the job's.
        await fail(f"{sub.backend}: not configured ({exc})", "configuration")
        return None
    try:
        styled, negative = styles.apply(sub.style, sub.prompt, sub.negative_prompt)
    except ConfigError as exc:
        await fail(str(exc), "permanent")
        return None
    request = GenerationRequest(
        prompt=styled,
        user_prompt=sub.prompt,
        width=sub.width,
        height=sub.height,
        seed=seed,
        steps=sub.steps,
        negative_prompt=negative,
        style=sub.style,
        opts=dict(sub.opts or {}),
        job_id=sub.job_id,
        resume=_resumable(item.resume, sub.backend),
    )
    try:
        result = await generate_with_lease(
            gateway, settings, attempt, backend.generate, request, observer
        )
    except GenerationError as exc:
        await fail(f"{sub.backend}: {exc}", exc.error_class)
        return None
    except ConfigError as exc:
        # Raised by generate itself, e.g. an unset token env var.
        await fail(f"{sub.backend}: not configured ({exc})", "configuration")
        return None
    except (LeaseLostError, CancelRequestedError, OSError):
        raise
    except Exception as exc:
        # A bug or an unexpected library error: retry the job rather than lose it.
        log.exception(
            "backend %s raised unexpectedly for job %s",
            sub.backend,
            sub.job_id,
            extra=job_fields(sub.job_id),
        )
        await fail(f"{sub.backend}: internal error {type(exc).__name__}: {exc}", "transient")
        return None
    outcome = GenerationOutcome(
        backend=sub.backend,
        model=result.model,
        seed=result.seed,
        mime=result.mime,
        bytes=len(result.image),
        sha256=hashlib.sha256(result.image).hexdigest(),
        latency_ms=result.latency_ms,
        cost_usd_estimate=result.cost_usd_estimate,
        metadata=result.recorded_metadata(),
    )
    return GeneratedImage(
        submitted=sub,
        claimed=item.claimed,
        outcome=outcome,
        record=dc.generation_succeeded(worker, outcome, settings.lease_s, attempt=attempt),
        image=result.image,
        style=sub.style,
    )


def _resumable(run: ExternalRun | None, backend: str) -> ExternalRun | None:
    """The run an earlier attempt started (the fold keeps the latest PredictionCreated across
    requeues), offered to the backend to resume; whether it still can is the backend's call."""
    return run if run is not None and run.backend == backend else None


async def record_cancelled(
    gateway: JobStore,
    worker: str,
    job_id: uuid.UUID,
    exc: CancelRequestedError,
    attempt: int,
    actor: str,
) -> None:
    """The work stopped on a cancel request: the job ends cancelled."""
    log.info("job %s cancelled: %s", job_id, exc.reason, extra=job_fields(job_id))
    try:
        await gateway.transition(job_id, dc.cancelled(worker, attempt=attempt, actor=actor))
    except LeaseLostError as lost:
        log.warning("job %s: %s; not recorded", job_id, lost, extra=job_fields(job_id))


def being_cancelled() -> bool:
    return trio.current_effective_deadline() == float("-inf")


async def give_back(
    gateway: JobStore, worker: str, job_id: uuid.UUID, reason: str, *, attempt: int, actor: str
) -> None:
    """Requeue a job our claim ``attempt`` holds (refunding the attempt), even while being
    cancelled."""
    with trio.move_on_after(FINAL_WRITE_GRACE_S, shield=True):
        try:
            await gateway.transition(
                job_id, dc.abort_in_flight(worker, reason, attempt=attempt, actor=actor)
            )
            log.warning("job %s: %s; requeued", job_id, reason, extra=job_fields(job_id))
        except (LeaseLostError, DatabaseError) as exc:
            log.warning(
                "job %s: could not requeue (%s); the Reaper will after its lease",
                job_id,
                exc,
                extra=job_fields(job_id),
            )


async def _fail(
    gateway: JobStore,
    worker: str,
    attempt: int,
    job_id: uuid.UUID,
    error: str,
    error_class: ErrorClass,
    *,
    wait: bool = True,
) -> None:
    log.info(
        "job %s generation failed (%s): %s",
        job_id,
        error_class,
        error,
        extra=job_fields(job_id),
    )
    await gateway.transition(
        job_id, dc.failure(worker, error, error_class, "executor", attempt=attempt, wait=wait)
    )
