"""Discard the objects a failed job left in storage (run by the Reaper on each pass).

An attempt uploads its object before the transaction that completes the job. If the worker
dies in between (kill -9, power), or the store kept an upload whose reply was lost, and the
job later fails for good (attempts used up, a permanent error on a retry), that object belongs
to no image: an orphan. Completion stays exactly-once because a failed job can no longer
complete; so once the job is ``failed`` its reserved keys are deleted and ``ImageDiscarded``
is appended, which also marks the job as cleaned. A delete that fails is retried on the next
pass.

The keys deleted are the ones this job reserved before uploading (``imagen.storage_keys``):
reservations are exclusive, so this never touches a key another job owns or is completing
onto. A job that failed before reservations existed (migration 0007) falls back to the keys
its attempts would have chosen, skipping any another job holds. Once discarded, the job's
reservations stay as tombstones: a key is never handed to another job. A worker frozen past
its lease mid-upload (SIGSTOP, a paused VM) may wake and write its object after the delete;
it can only write onto its own job's key, and ``recheck_tombstones`` deletes it there.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC
from typing import Final

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core.errors import StorageError
from imagen_actors.core.naming import disambiguated_key, storage_key
from imagen_actors.db.ports import LeftoverStore
from imagen_actors.observability.logs import job_fields
from imagen_actors.storage.base import ObjectStore

BATCH: Final = 100
# How long after the discard a frozen worker's late write is looked for, and how often.
ZOMBIE_WINDOW_S: Final = 24 * 3600.0
RECHECK_EVERY_S: Final = 300.0
log = logging.getLogger("imagen_actors.janitor")


async def discard_one(
    gateway: LeftoverStore, store: ObjectStore, worker_id: str, job_id: uuid.UUID
) -> bool:
    keys = await gateway.reserved_image_keys(store.bucket, job_id)
    if not keys:
        keys = await unreserved_candidates(gateway, store.bucket, job_id)
    try:
        for key in keys:
            await store.delete(key)
    except StorageError as exc:
        log.warning(
            "job %s: could not discard its leftover objects (%s); will retry",
            job_id,
            exc,
            extra=job_fields(job_id),
        )
        return False
    t = await gateway.transition(job_id, dc.discard_objects(worker_id, store.bucket, keys))
    # The objects are gone, the keys stay this job's: a tombstone that a later job with the
    # same prompt, seed and day cannot take, so a frozen attempt of this job that wakes and
    # writes can only write onto its own key (which recheck_tombstones then cleans).
    await gateway.tombstone_image_keys(store.bucket, job_id)
    if t.events:
        log.info(
            "job %s failed after generating: discarded %s",
            job_id,
            ", ".join(keys),
            extra=job_fields(job_id),
        )
    return bool(t.events)


async def unreserved_candidates(
    gateway: LeftoverStore, bucket: str, job_id: uuid.UUID
) -> list[str]:
    """For a job that failed before keys were reserved (migration 0007): the keys its
    attempts would have chosen, the contract key per generated seed and its job variant,
    minus any key reserved by another job (every stored image's key is)."""
    stream = await gateway.load_events(job_id)
    submitted = stream[0]
    assert isinstance(submitted, ev.JobSubmitted)
    when = submitted.occurred_at.astimezone(UTC)
    keys: list[str] = []
    for seed in sorted({e.seed for e in stream if isinstance(e, ev.GenerationSucceeded)}):
        key = storage_key(when, submitted.prompt, seed)
        keys += [key, disambiguated_key(key, job_id)]
    return [key for key in keys if await gateway.storage_key_owner(bucket, key) in (None, job_id)]


async def discard_leftovers(
    gateway: LeftoverStore, store: ObjectStore, worker_id: str, *, recent_only: bool
) -> int:
    """One pass over failed jobs not yet cleaned, batch after batch; the number cleaned."""
    n = 0
    while True:
        failed = await gateway.failed_with_leftovers(BATCH, recent_only=recent_only)
        cleaned = 0
        for job_id in failed:
            cleaned += await discard_one(gateway, store, worker_id, job_id)
        n += cleaned
        # A full batch may have more behind it; one where nothing could be cleaned (storage
        # down) would only come back the same, so the next pass retries it.
        if len(failed) < BATCH or cleaned == 0:
            return n


async def recheck_tombstones(
    gateway: LeftoverStore,
    store: ObjectStore,
    *,
    within_s: float = ZOMBIE_WINDOW_S,
    every_s: float = RECHECK_EVERY_S,
) -> int:
    """Delete objects written onto tombstoned keys after their discard; the number deleted.

    Only a worker that was frozen while holding the failed job can write there: no other job
    can reserve the key. A failed check is retried at the next pass.
    """
    removed = 0
    while True:
        due = await gateway.tombstones_to_recheck(
            store.bucket, within_s=within_s, every_s=every_s, limit=BATCH
        )
        for key, job_id in due:
            try:
                if await store.exists(key):
                    await store.delete(key)
                    removed += 1
                    log.warning(
                        "job %s failed, but an object was written onto its key %s afterwards "
                        "(a worker frozen past its lease?); deleted it",
                        job_id,
                        key,
                        extra=job_fields(job_id),
                    )
            except StorageError as exc:
                log.warning("could not re-check %s: %s; will retry", key, exc)
                return removed
            await gateway.tombstone_checked(store.bucket, key)
        if len(due) < BATCH:
            return removed
