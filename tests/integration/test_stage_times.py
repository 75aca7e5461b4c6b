"""imagen.job_stage_times (schema 0018): the stage times kept as jobs end give `audit
latency` exactly what aggregating the window's events gives, for ended, reopened and open
jobs alike (tests/integration/test_archive.py: they leave with an archived job)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from imagen_actors.core import events as ev
from imagen_actors.db.gateway import Gateway
from tests.integration.test_audit import (
    BASE,
    W,
    _claimed,
    _started,
    append,
    gw,
    job_at,
    seed_done,
    seed_failed,
    seed_latency_set,
)

pytestmark = pytest.mark.db
__all__ = ["gw"]

# The 0014 way: every window's event aggregated, the reference the table must match.
REFERENCE = """
SELECT l.backend, s.stage, count(*)::int AS n,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY s.ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s.ms) AS p95_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY s.ms) AS p99_ms,
       max(s.ms) AS max_ms
FROM imagen.job_stage_latency_since(coalesce($1::timestamptz, '-infinity')) l
CROSS JOIN LATERAL (VALUES (1, 'queue_wait', l.queue_wait_ms), (2, 'generation', l.generation_ms),
                           (3, 'upload', l.upload_ms), (4, 'total', l.total_ms)) AS s(ord, stage, ms)
WHERE s.ms IS NOT NULL
GROUP BY l.backend, s.ord, s.stage ORDER BY l.backend, s.ord
"""


async def stage_row(gw: Gateway, job: uuid.UUID) -> dict[str, object] | None:
    rows = await gw.fetch_sql("SELECT * FROM imagen.job_stage_times WHERE job_id = $1", job)
    return dict(rows[0]) if rows else None


async def seed_open_and_reopened(gw: Gateway) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A running job (claimed 3 s after creation), a pending one, and one cancelled after
    its claim and then retried (pending again, its first claim still counting)."""
    running = await job_at(gw, BASE + timedelta(minutes=5))
    await append(gw, running, [_claimed(running, BASE + timedelta(minutes=5, seconds=3))])
    await append(gw, running, [_started(running, BASE + timedelta(minutes=5, seconds=4))])
    pending = await job_at(gw, BASE + timedelta(minutes=6))
    reopened = await job_at(gw, BASE + timedelta(minutes=7))
    await append(gw, reopened, [_claimed(reopened, BASE + timedelta(minutes=7, seconds=2))])
    assert await gw.cancel_job(reopened, "stop") == "running"
    at = BASE + timedelta(minutes=7, seconds=3)
    await append(
        gw,
        reopened,
        [
            ev.JobCancelled(
                job_id=reopened, occurred_at=at, actor="executor", worker_id=W, reason="stop"
            )
        ],
    )
    return running, pending, reopened


async def test_audit_latency_matches_the_events_for_every_kind_of_job(gw: Gateway) -> None:
    done = await seed_latency_set(gw)
    await seed_done(gw, BASE, 99_000, 1, 1, backend="other")
    failed = await seed_failed(gw, BASE + timedelta(minutes=1), "CUDA out of memory")
    running, pending, reopened = await seed_open_and_reopened(gw)
    assert await stage_row(gw, reopened) is not None  # ended cancelled: kept
    assert await gw.fetchval("retry_job", reopened) == "pending"
    assert await stage_row(gw, reopened) is None  # reopened: computed live again
    assert await stage_row(gw, running) is None and await stage_row(gw, pending) is None
    assert (await stage_row(gw, failed) or {})["status"] == "failed"
    row = await stage_row(gw, done[0])
    assert row is not None and row["status"] == "done" and row["total_ms"] is not None
    for since in (None, BASE + timedelta(minutes=5), BASE + timedelta(hours=1)):
        for backend in (None, "mock"):
            got = [dict(r) for r in await gw.fetch("audit_latency", since, backend)]
            want = [
                dict(r)
                for r in await gw.fetch_sql(REFERENCE, since)
                if backend is None or r["backend"] == backend
            ]
            assert got == want, (since, backend)
    # The open jobs' queue waits are in: 3 s (running) and 2 s (the reopened one's first
    # claim), beside the 9 ended mock jobs created from 10:10 on.
    rows = await gw.fetch("audit_latency", BASE + timedelta(minutes=5), "mock")
    assert next(r for r in rows if r["stage"] == "queue_wait")["n"] == 9 + 2
