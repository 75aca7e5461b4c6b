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
onto.
"""

from __future__ import annotations

import logging
import uuid
from typing import Final

from imagen_actors import decisions as dc
from imagen_actors.errors import StorageError
from imagen_actors.gateway import Gateway
from imagen_actors.observability.logs import job_fields
from imagen_actors.storage.base import ObjectStore

BATCH: Final = 100
log = logging.getLogger("imagen_actors.janitor")


async def discard_one(
    gateway: Gateway, store: ObjectStore, worker_id: str, job_id: uuid.UUID
) -> bool:
    keys = await gateway.reserved_image_keys(store.bucket, job_id)
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
