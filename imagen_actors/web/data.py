"""What the pages show, read through the Gateway's named queries (db/sql/dashboard.sql and
the audit/replay ones). Every read is bounded: a LIMIT, a keyset or a time window."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from imagen_actors.cli.replay_verify import verify_one
from imagen_actors.cli.reports import replay as rr
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.transactions import PoisonedStreamError

RECENT_JOBS: Final = 50
# Events looked at to find the recent jobs (progress ticks make several per job).
RECENT_EVENTS: Final = 2000
RUNNING: Final = 100
WORKERS: Final = 100
FAILURE_CAUSES: Final = 20
CONTROL_EVENTS: Final = 30
CHANGED_EVENTS: Final = 500
WINDOW: Final = timedelta(hours=24)
CHART_DAYS: Final = 14
# Completed jobs per day whose stage times make that day's p50/p95.
LATENCY_SAMPLE: Final = 500
STATUSES: Final = ("pending", "running", "done", "failed", "cancelled")


def queue_table(live: list[dict[str, Any]], finished: list[dict[str, Any]]) -> dict[str, Any]:
    """{backends: [...], rows: {backend: {status: n}}, totals: {status: n}}."""
    rows: dict[str, dict[str, int]] = defaultdict(dict)
    totals: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for r in [*live, *finished]:
        rows[r["backend"]][r["status"]] = r["n"]
        totals[r["status"]] += r["n"]
    return {"backends": sorted(rows), "rows": dict(rows), "totals": totals}


async def queue(gw: Gateway) -> dict[str, Any]:
    return queue_table(await gw.fetch("dash_queue_live"), await finished_counts(gw))


async def overview(gw: Gateway, before: int | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    since_days = (now - timedelta(days=CHART_DAYS)).replace(hour=0, minute=0, second=0)
    return {
        "now": now,
        "cursor": await gw.fetchval("dash_last_event_id"),
        "queue": await queue(gw),
        "workers": await gw.fetch("dash_workers", WORKERS),
        "running": await gw.fetch("dash_running", RUNNING),
        "recent": await gw.fetch("dash_recent_jobs", before, RECENT_EVENTS, RECENT_JOBS),
        "failures": (await gw.fetch("audit_failures", now - WINDOW))[:FAILURE_CAUSES],
        "control": await gw.fetch("dash_control_events", now - WINDOW, CONTROL_EVENTS),
        "latency": await gw.fetch("dash_latency_by_day", since_days, LATENCY_SAMPLE),
        "usage": await gw.fetch("dash_usage_by_day", since_days),
    }


async def finished_counts(gw: Gateway) -> list[dict[str, Any]]:
    """Jobs ended in the last 24 h per outcome and backend (~150 ms on a 1M-job history with
    17k jobs a day: live updates refresh it every FINISHED_EVERY_S, not on every tick)."""
    return await gw.fetch("dash_queue_finished", datetime.now(UTC) - WINDOW)


async def live_update(
    gw: Gateway, after: int, finished: list[dict[str, Any]], job: uuid.UUID | None = None
) -> dict[str, Any]:
    """What changed since event position ``after``, plus the running set and the queue
    (live counts now, ``finished`` as last read). A job page's stream (``job``) gets only
    that job's row, read afresh on every tick: an event position is taken when a transaction
    inserts, not when it commits, so a cursor alone can step over a late commit."""
    if job is not None:
        # No cursor to move: the row is read whole every time.
        return {"cursor": after, "job": await gw.fetchrow("dash_job_live", job)}
    changed = await gw.fetch("dash_changed_since", after, CHANGED_EVENTS)
    cursor = max([after, *(r["event_id"] for r in changed)])
    return {
        "cursor": cursor,
        "queue": queue_table(await gw.fetch("dash_queue_live"), finished),
        "running": await gw.fetch("dash_running", RUNNING),
        "changed": changed,
    }


async def job_page(gw: Gateway, job_id: uuid.UUID) -> dict[str, Any] | None:
    # The position is read before the job: whatever changes after the row was read is after
    # it too, so the page's live stream starts from there and misses nothing in between.
    cursor = await gw.fetchval("dash_last_event_id")
    job = await gw.fetchrow("dash_job", job_id)
    if job is None:
        return None
    timeline: rr.JobTimeline | None = None
    unreadable: str | None = None
    try:
        timeline = rr.timeline(job_id, await gw.load_events(job_id))
    except PoisonedStreamError as exc:
        unreadable = str(exc)
    return {
        "cursor": cursor,
        "job": job,
        "timeline": timeline,
        "unreadable": unreadable,
        "stages": await gw.fetchrow("dash_job_stages", job_id),
        "image": await gw.fetchrow("dash_job_image", job_id),
        "verify": await verify_one(gw, job_id),
    }
