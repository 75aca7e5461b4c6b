"""Discard the objects a failed job left in storage (run by the Reaper on each pass).

An attempt uploads its object before the transaction that completes the job. If the worker
dies in between (kill -9, power), or the store kept an upload whose reply was lost, and the
job later fails for good (attempts used up, a permanent error on a retry), that object belongs
to no image: an orphan. Completion stays exactly-once because a failed job can no longer
complete; so once the job is ``failed`` its candidate keys are deleted and ``ImageDiscarded``
is appended, which also marks the job as cleaned. A delete that fails is retried on the next
pass.

The candidate keys are what the Uploader would have chosen for each generated seed: the
contract key ``<date>/<slug>-<seed>.png`` (only when no image row owns it: then it is another
job's object) and its job-specific variant.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC
from typing import Final

from imagen_actors import decisions as dc
from imagen_actors import events as ev
from imagen_actors.errors import StorageError
from imagen_actors.gateway import Gateway
from imagen_actors.naming import disambiguated_key, storage_key
from imagen_actors.observability.logs import job_fields
from imagen_actors.storage.base import ObjectStore

BATCH: Final = 100
log = logging.getLogger("imagen_actors.janitor")


def candidate_keys(stream: Sequence[ev.Event]) -> list[str]:
    """Every key an attempt of this job could have uploaded to."""
    submitted = stream[0]
    assert isinstance(submitted, ev.JobSubmitted)
    when = submitted.occurred_at.astimezone(UTC)
    keys: list[str] = []
    for seed in sorted({e.seed for e in stream if isinstance(e, ev.GenerationSucceeded)}):
        key = storage_key(when, submitted.prompt, seed)
        keys += [key, disambiguated_key(key, submitted.job_id)]
    return keys


async def discard_one(
    gateway: Gateway, store: ObjectStore, worker_id: str, job_id: uuid.UUID
) -> bool:
    stream = await gateway.load_events(job_id)
    keys = [
        key
        for key in candidate_keys(stream)
        if await gateway.image_key_owner(store.bucket, key) in (None, job_id)
    ]
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
    if t.events:
        log.info(
            "job %s failed after generating: discarded %s",
            job_id,
            ", ".join(keys),
            extra=job_fields(job_id),
        )
    return bool(t.events)


async def discard_leftovers(
    gateway: Gateway, store: ObjectStore, worker_id: str, *, recent_only: bool
) -> int:
    """One pass over failed jobs not yet cleaned; the number cleaned now."""
    rows = await gateway.fetch("failed_with_leftovers", BATCH, recent_only)
    n = 0
    for row in rows:
        n += await discard_one(gateway, store, worker_id, row["id"])
    return n
