"""UsageRecorder: one mai.imagen_usage row per completed job, best effort.

The prompt is stored only as its sha256. A failure is logged and recorded as UsageFailed;
it never fails the job or loses the image.
"""

from __future__ import annotations

import hashlib
import logging

import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core.errors import DatabaseError
from imagen_actors.core.records import UsageRow
from imagen_actors.db.ports import JobStore
from imagen_actors.observability.logs import job_fields
from imagen_actors.worker.actors.messages import ImageCompleted

log = logging.getLogger("imagen_actors.usage")


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


async def usage_recorder(
    gateway: JobStore,
    *,
    worker_id: str,
    caller: str,
    completed: trio.MemoryReceiveChannel[ImageCompleted],
) -> None:
    async for item in completed:
        await record_one(gateway, worker_id=worker_id, caller=caller, item=item)


async def record_one(
    gateway: JobStore, *, worker_id: str, caller: str, item: ImageCompleted
) -> None:
    gen, sub = item.succeeded, item.submitted
    row = UsageRow(
        backend=gen.backend,
        model=gen.model,
        seed=gen.seed,
        prompt_hash=prompt_hash(sub.prompt),
        latency_ms=gen.latency_ms,
        cost_usd_estimate=gen.cost_usd_estimate,
        caller=caller,
        job_id=sub.job_id,
    )
    try:
        await gateway.record_usage_and_transition(
            row, dc.usage_recorded(worker_id, gen.cost_usd_estimate)
        )
    except DatabaseError as exc:
        log.warning("job %s: usage not recorded: %s", sub.job_id, exc, extra=job_fields(sub.job_id))
        try:
            await gateway.transition(sub.job_id, dc.usage_failed(worker_id, str(exc)))
        except DatabaseError as again:
            log.warning(
                "job %s: UsageFailed not recorded either: %s",
                sub.job_id,
                again,
                extra=job_fields(sub.job_id),
            )
