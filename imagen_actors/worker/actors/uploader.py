"""Uploader: records the generation the Executor handed over (GenerationSucceeded or
GenerationReused) and reserves the image's object key in one transaction, writes PNG + JSON
sidecar on disk, puts the object in storage, then ONE transaction that inserts
imagen.images and the job's mai.imagen_usage row (both idempotent on job_id) and completes
the job. The prompt is kept in the usage row only as its sha256.

Runs beside the Executor: job N uploads while job N+1 generates. A storage outage (a
dependency or configuration fault) marks the store unhealthy and requeues the job with its
attempt refunded, recording where the image is kept: the retry uploads that file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import attrs
import msgspec
import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core.errors import CancelRequestedError, LeaseLostError, StorageError, as_fault
from imagen_actors.core.naming import disambiguated_key, render_template, storage_key
from imagen_actors.core.records import ImageRow, Transition, UsageRow
from imagen_actors.db.ports import JobStore
from imagen_actors.observability.logs import job_fields
from imagen_actors.storage.base import ObjectStore
from imagen_actors.storage.local import write_atomic
from imagen_actors.worker.actors.executor import being_cancelled, give_back, record_cancelled
from imagen_actors.worker.actors.lease import holding_lease
from imagen_actors.worker.actors.messages import GeneratedImage, ImageCompleted
from imagen_actors.worker.health import STORE, HealthBoard

log = logging.getLogger("imagen_actors.uploader")


@attrs.frozen(kw_only=True)
class OutputSettings:
    directory: Path
    naming: str
    write_metadata_json: bool = True


@attrs.frozen(kw_only=True)
class UploaderSettings:
    worker_id: str
    output: OutputSettings
    # Renewed every lease_s / 3 while an upload runs (worker.lease_s).
    lease_s: float = 60.0
    # Who asks (mai.imagen_usage.caller); None records no usage row (no database).
    caller: str | None = None
    # As ExecutorSettings.cancel_notice.
    cancel_notice: Callable[[], Awaitable[None]] | None = None


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def sidecar(item: GeneratedImage, *, key: str, bucket: str, image_path: Path) -> dict[str, Any]:
    sub, gen = item.submitted, item.outcome
    return {
        "prompt": sub.prompt,
        "style": sub.style,
        "negative": sub.negative_prompt,
        "backend": gen.backend,
        "model": gen.model,
        "workflow": item.workflow or gen.metadata.get("workflow"),
        "seed": gen.seed,
        "size": {
            "width": gen.metadata.get("width", sub.width),
            "height": gen.metadata.get("height", sub.height),
        },
        "steps": sub.steps or gen.metadata.get("steps"),
        "latency_ms": gen.latency_ms,
        "cost_usd_estimate": gen.cost_usd_estimate,
        "job_id": str(sub.job_id),
        "sha256": gen.sha256,
        "bucket": bucket,
        "storage_path": key,
        "image": image_path.name,
    }


def write_output(out: OutputSettings, item: GeneratedImage) -> Path:
    """Write the PNG (and sidecar) under the naming template; never overwrite another image."""
    sub, gen = item.submitted, item.outcome
    relative = render_template(
        out.naming,
        when=sub.occurred_at.astimezone(UTC),
        prompt=sub.prompt,
        seed=gen.seed,
        backend=gen.backend,
        model=gen.model,
        job_id=sub.job_id,
    )
    target = out.directory / relative
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() != gen.sha256:
        target = target.with_name(f"{target.stem}-{sub.job_id.hex[:8]}{target.suffix}")
    # Not fsynced: the stored object is the durable copy. A copy torn by a power cut fails
    # the sha256 check of a kept-image retry, which then renders again (docs/decisions.md).
    write_atomic(target, item.image, durable=False)
    return target


async def uploader(
    gateway: JobStore,
    store: ObjectStore,
    settings: UploaderSettings,
    *,
    uploads: trio.MemoryReceiveChannel[GeneratedImage],
    health: HealthBoard | None = None,
) -> None:
    try:
        async for item in uploads:
            await upload_one(gateway, store, settings, item, health)
    finally:
        if being_cancelled():
            await give_back_waiting(gateway, settings.worker_id, uploads)


async def give_back_waiting(
    gateway: JobStore, worker: str, uploads: trio.MemoryReceiveChannel[GeneratedImage]
) -> None:
    """On abort, requeue the finished images still waiting for their upload too: they are
    ours, and would otherwise stay ``running`` until their leases expire."""
    while True:
        try:
            item = uploads.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return
        await give_back(
            gateway,
            worker,
            item.submitted.job_id,
            "worker shut down before the upload",
            attempt=item.claimed.attempt,
            actor="uploader",
        )


def key_candidates(item: GeneratedImage) -> list[str]:
    """The object keys this job may take, in order of preference.

    The contract key first; another job that reserved it first (same prompt, seed and day),
    or whose tombstone holds it (a failed job's: keys are never handed on), keeps it, and
    this job takes its job-specific variant, or the variant with the whole job id when two
    ids share their first 8 hex digits. A job that reserved a key before (a retry) gets that
    one back, so it overwrites its own earlier upload instead of leaving a second object.
    """
    sub = item.submitted
    key = storage_key(sub.occurred_at.astimezone(UTC), sub.prompt, item.outcome.seed)
    return [
        key,
        disambiguated_key(key, sub.job_id),
        disambiguated_key(key, sub.job_id, full=True),
    ]


async def record_generation(gateway: JobStore, store: ObjectStore, item: GeneratedImage) -> str:
    """Commit the handed-over generation and reserve the image's key in one transaction:
    the key, reserved before anything is uploaded to it."""
    job_id = item.submitted.job_id
    _t, (key, owner) = await gateway.transition_reserving_key(
        job_id, item.record, store.bucket, key_candidates(item)
    )
    if owner != job_id:
        # Only a different prompt whose slug ends in this job's seed and id could hold it.
        raise StorageError(
            f"object key {key} is reserved by job {owner}; resubmit this job (a new job id "
            "gives a new key)",
            error_class="permanent",
        )
    return key


async def upload_one(
    gateway: JobStore,
    store: ObjectStore,
    settings: UploaderSettings,
    item: GeneratedImage,
    health: HealthBoard | None = None,
) -> ImageCompleted | None:
    sub, gen = item.submitted, item.outcome
    worker, attempt = settings.worker_id, item.claimed.attempt
    written: list[Path] = []
    try:
        # However long the upload takes (storage retries, a slow link), the lease is renewed
        # meanwhile, so the Reaper never hands a job on while its upload is still running.
        t, image_path = await holding_lease(
            gateway,
            sub.job_id,
            lambda: store_and_complete(gateway, store, settings, item, written),
            worker_id=worker,
            attempt=attempt,
            lease_s=settings.lease_s,
            actor="uploader",
            notice=settings.cancel_notice,
        )
    except CancelRequestedError as exc:
        # Before the completion: no image row; an object already put is the janitor's.
        await record_cancelled(gateway, worker, sub.job_id, exc, attempt, "uploader")
        return None
    except StorageError as exc:
        log.warning(
            "job %s: storing failed (%s): %s",
            sub.job_id,
            exc.error_class,
            exc,
            extra=job_fields(sub.job_id),
        )
        fault = as_fault(exc.error_class)
        if fault is not None and health is not None:
            health.mark_unhealthy(STORE, str(exc), fault=fault)
        with contextlib.suppress(LeaseLostError):
            await gateway.transition(
                sub.job_id,
                dc.failure(
                    worker,
                    f"storage: {exc}",
                    exc.error_class,
                    "uploader",
                    attempt=attempt,
                    record_generation_failed=False,
                    # The image stays on disk: the retry uploads it instead of rendering.
                    kept_image=str(written[0]) if written and fault is not None else None,
                    wait=health is not None,
                ),
            )
        return None
    except LeaseLostError as exc:
        log.warning(
            "job %s: %s; another worker owns it now",
            sub.job_id,
            exc,
            extra=job_fields(sub.job_id),
        )
        return None
    finally:
        if being_cancelled():
            await give_back(
                gateway,
                worker,
                sub.job_id,
                "worker shut down mid-upload",
                attempt=attempt,
                actor="uploader",
            )
    # Normally this transition's event; the stream's own when a retried completion found
    # its first try committed (its reply lost to a database restart).
    completed = next(e for e in (*t.events, *t.prior) if isinstance(e, ev.JobCompleted))
    log.info("job %s done: %s", sub.job_id, image_path, extra=job_fields(sub.job_id))
    return ImageCompleted(
        submitted=sub, outcome=gen, completed=completed, image_path=str(image_path)
    )


async def store_and_complete(
    gateway: JobStore,
    store: ObjectStore,
    settings: UploaderSettings,
    item: GeneratedImage,
    written: list[Path] | None = None,
) -> tuple[Transition, Path]:
    """The generation and the key (one transaction), disk, then the object, then one
    transaction: the image row and the completion. The image's path on disk is appended to
    ``written`` as soon as it is there."""
    sub, gen = item.submitted, item.outcome
    key = await record_generation(gateway, store, item)

    def write_files() -> Path:
        # One hop to a worker thread for both files, not one each.
        path = write_output(settings.output, item)
        if written is not None:
            written.append(path)
        if settings.output.write_metadata_json:
            meta = sidecar(item, key=key, bucket=store.bucket, image_path=path)
            write_atomic(
                path.with_suffix(".json"),
                msgspec.json.format(msgspec.json.encode(meta), indent=2),
                durable=False,
            )
        return path

    try:
        image_path = await trio.to_thread.run_sync(write_files)
    except OSError as exc:
        # A full or read-only disk is the job's failure to report, not an actor crash.
        raise StorageError(
            f"could not write to output.directory {settings.output.directory}: "
            f"{exc.strerror or exc}"
        ) from exc
    stored = await store.put(key, item.image, gen.mime)
    image = ImageRow(
        owner_user_id=sub.owner_user_id,
        job_id=sub.job_id,
        prompt=sub.prompt,
        backend=gen.backend,
        model=gen.model,
        seed=gen.seed,
        width=gen.metadata.get("width", sub.width),
        height=gen.metadata.get("height", sub.height),
        bucket=stored.bucket,
        storage_path=stored.key,
        mime=gen.mime,
        bytes=gen.bytes,
        sha256=gen.sha256,
        metadata={
            "local_path": str(image_path),
            "location": stored.location,
            "latency_ms": gen.latency_ms,
            "style": sub.style,
            "negative_prompt": sub.negative_prompt,
            **gen.metadata,
        },
    )
    usage = None
    if settings.caller is not None:
        usage = UsageRow(
            backend=gen.backend,
            model=gen.model,
            seed=gen.seed,
            prompt_hash=prompt_hash(sub.prompt),
            latency_ms=gen.latency_ms,
            cost_usd_estimate=gen.cost_usd_estimate,
            caller=settings.caller,
            job_id=sub.job_id,
        )
    complete = dc.complete(
        settings.worker_id,
        image,
        attempt=item.claimed.attempt,
        local_path=str(image_path),
        cost_usd_estimate=gen.cost_usd_estimate,
    )
    t = await gateway.store_image_and_transition(image, complete, usage)
    return t, image_path
