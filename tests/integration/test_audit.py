"""audit: the 0005 views, the sql/audit.sql blocks and the CLI against a seeded event set."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from imagen_actors.cli.reports import audit as ar
from imagen_actors.core import events as ev
from imagen_actors.core import fold
from imagen_actors.db.gateway import Gateway
from tests.support.cli import run_cli
from tests.support.jobs import OTHER_OWNER, OWNER, assert_replay_matches, insert_job
from tests.support.roles import run_as

pytestmark = pytest.mark.db

BASE = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
W = "seed-worker"
MS = timedelta(milliseconds=1)


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[Gateway]:
    async with Gateway.open(database_url, application_name="test-audit") as gateway:
        yield gateway


async def job_at(
    gw: Gateway, created_at: datetime, backend: str = "mock", owner: uuid.UUID = OWNER
) -> uuid.UUID:
    """INSERT a job as a privileged role may, choosing created_at (= JobSubmitted's time)."""
    rows = await gw.fetch_sql(
        "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height, created_at) "
        "VALUES ($1, 'seeded owl', $2, 64, 64, $3) RETURNING id",
        owner,
        backend,
        created_at,
    )
    job_id: uuid.UUID = rows[0]["id"]
    return job_id


async def append(gw: Gateway, job_id: uuid.UUID, new: Sequence[ev.Event]) -> fold.JobState:
    """Append events with chosen times through a real transition (their occurred_at kept)."""
    transition = await gw.transition(job_id, lambda _state, _now: new)
    return transition.state


def _claimed(job_id: uuid.UUID, at: datetime, attempt: int = 1, lease_s: float = 60) -> ev.Event:
    return ev.JobClaimed(
        job_id=job_id,
        occurred_at=at,
        actor="claimer",
        worker_id=W,
        attempt=attempt,
        lease_expires_at=at + timedelta(seconds=lease_s),
    )


def _started(job_id: uuid.UUID, at: datetime) -> ev.Event:
    return ev.GenerationStarted(
        job_id=job_id, occurred_at=at, actor="executor", worker_id=W, backend="mock", seed=7
    )


async def seed_done(
    gw: Gateway,
    created: datetime,
    wait_ms: float,
    gen_ms: float,
    upload_ms: float,
    backend: str = "mock",
    owner: uuid.UUID = OWNER,
) -> uuid.UUID:
    """A job that waited, generated and uploaded for exactly the given durations."""
    job = await job_at(gw, created, backend, owner)
    claimed = created + wait_ms * MS
    started = claimed + 100 * MS
    succeeded = started + gen_ms * MS
    completed = succeeded + upload_ms * MS
    path = f"2026-01-01/seeded-owl-{job.hex[:8]}.png"
    image_id = await gw.fetchval(
        "upsert_image",
        owner,
        job,
        "seeded owl",
        backend,
        "mock-v1",
        7,
        64,
        64,
        "imagen-generated",
        path,
        "image/png",
        10,
        hashlib.sha256(b"x").hexdigest(),
        {"local_path": f"/out/{path}"},
    )
    common = {"job_id": job, "actor": "uploader", "worker_id": W}
    await append(
        gw,
        job,
        [
            _claimed(job, claimed),
            _started(job, started),
            ev.GenerationSucceeded(
                job_id=job,
                occurred_at=succeeded,
                actor="executor",
                worker_id=W,
                backend=backend,
                model="mock-v1",
                seed=7,
                mime="image/png",
                bytes=10,
                sha256=hashlib.sha256(b"x").hexdigest(),
                latency_ms=int(gen_ms),
            ),
            ev.ImageStored(
                **common,
                occurred_at=succeeded + upload_ms / 2 * MS,
                image_id=image_id,
                bucket="imagen-generated",
                storage_path=path,
                bytes=10,
                sha256=hashlib.sha256(b"x").hexdigest(),
            ),
            ev.JobCompleted(**common, occurred_at=completed, image_id=image_id),
        ],
    )
    return job


async def seed_failed(gw: Gateway, created: datetime, error: str) -> uuid.UUID:
    job = await job_at(gw, created)
    at = created + timedelta(seconds=1)
    await append(
        gw,
        job,
        [
            _claimed(job, at),
            _started(job, at + MS),
            ev.GenerationFailed(
                job_id=job,
                occurred_at=at + 2 * MS,
                actor="executor",
                worker_id=W,
                error=error,
                error_class="permanent",
            ),
            ev.JobFailed(
                job_id=job,
                occurred_at=at + 3 * MS,
                actor="executor",
                worker_id=W,
                error=error,
                error_class="permanent",
            ),
        ],
    )
    return job


def percentile_cont(values: Sequence[float], q: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between closest ranks."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


WAITS = [1000.0 * i for i in range(1, 11)]
GENS = [2000.0 + 100 * i for i in range(1, 11)]
UPLOADS = [50.0 * i for i in range(1, 11)]


async def seed_latency_set(gw: Gateway) -> list[uuid.UUID]:
    jobs = []
    for i in range(10):
        created = BASE + timedelta(minutes=10 * i)  # 10:00 .. 11:30
        jobs.append(await seed_done(gw, created, WAITS[i], GENS[i], UPLOADS[i]))
    return jobs


async def test_stage_latency_view_has_exact_durations(gw: Gateway) -> None:
    """imagen.job_stage_latency gives each stage's duration in ms from the event times."""
    job = await seed_done(gw, BASE, 1500, 2500, 250)
    [row] = await gw.fetch_sql("SELECT * FROM imagen.job_stage_latency WHERE job_id = $1", job)
    assert row["queue_wait_ms"] == 1500
    assert row["generation_ms"] == 2500
    assert row["upload_ms"] == 250
    assert row["total_ms"] == 1500 + 100 + 2500 + 250
    assert (row["backend"], row["status"], row["created_at"]) == ("mock", "done", BASE)
    await assert_replay_matches(gw, job)


async def test_job_timeline_view_rows_and_gaps(gw: Gateway) -> None:
    """imagen.job_timeline has one row per event with the gap since the previous event."""
    job = await seed_done(gw, BASE, 1500, 2500, 250, backend="comfy")
    rows = await gw.fetch_sql(
        "SELECT * FROM imagen.job_timeline WHERE job_id = $1 ORDER BY seq", job
    )
    assert [r["type"] for r in rows] == [
        "JobSubmitted",
        "JobClaimed",
        "GenerationStarted",
        "GenerationSucceeded",
        "ImageStored",
        "JobCompleted",
    ]
    assert [r["since_previous_ms"] for r in rows] == [None, 1500, 100, 2500, 125, 125]
    assert rows[1]["since_previous"] == timedelta(milliseconds=1500)
    assert {r["backend"] for r in rows} == {"comfy"}
    assert rows[1]["worker_id"] == W and rows[0]["actor"] == "database"


async def test_latency_percentiles_per_stage(gw: Gateway) -> None:
    """audit_latency's p50/p95/p99 match percentile_cont over the seeded durations."""
    await seed_latency_set(gw)
    await seed_done(gw, BASE, 99_000, 1, 1, backend="other")
    rows = ar.rows_as(ar.LatencyRow, await gw.fetch("audit_latency", None, "mock"))
    by_stage = {r.stage: r for r in rows}
    assert [r.stage for r in rows] == ["queue_wait", "generation", "upload", "total"]
    totals = [w + 100 + g + u for w, g, u in zip(WAITS, GENS, UPLOADS, strict=True)]
    for stage, values in (
        ("queue_wait", WAITS),
        ("generation", GENS),
        ("upload", UPLOADS),
        ("total", totals),
    ):
        r = by_stage[stage]
        assert (r.backend, r.n) == ("mock", 10)
        assert r.p50_ms == pytest.approx(percentile_cont(values, 0.5))
        assert r.p95_ms == pytest.approx(percentile_cont(values, 0.95))
        assert r.p99_ms == pytest.approx(percentile_cont(values, 0.99))
        assert r.max_ms == pytest.approx(max(values))
    assert by_stage["queue_wait"].p50_ms == pytest.approx(5500)
    assert by_stage["queue_wait"].p95_ms == pytest.approx(9550)
    assert by_stage["queue_wait"].p99_ms == pytest.approx(9910)
    # --since keeps jobs created from 11:00 on: waits 7..10 s.
    since = await gw.fetch("audit_latency", BASE + timedelta(hours=1), "mock")
    wait = next(r for r in since if r["stage"] == "queue_wait")
    assert wait["n"] == 4 and wait["p50_ms"] == pytest.approx(8500)
    both = await gw.fetch("audit_latency", None, None)
    assert {r["backend"] for r in both} == {"mock", "other"}


async def test_failures_grouped_by_class_and_message(gw: Gateway) -> None:
    """audit_failures counts failed attempts and failed jobs per (class, message)."""
    await seed_failed(gw, BASE, "CUDA out of memory")
    last = await seed_failed(gw, BASE + timedelta(hours=2), "CUDA out of memory")
    await seed_failed(gw, BASE + timedelta(hours=1), "bad prompt")
    job = await job_at(gw, BASE)
    at = BASE + timedelta(seconds=5)
    await append(
        gw,
        job,
        [
            _claimed(job, at),
            _started(job, at + MS),
            ev.GenerationFailed(
                job_id=job,
                occurred_at=at + 2 * MS,
                actor="executor",
                worker_id=W,
                error="connection reset",
                error_class="transient",
            ),
            ev.JobRequeued(
                job_id=job, occurred_at=at + 3 * MS, actor="executor", worker_id=W, reason="retry"
            ),
        ],
    )
    rows = ar.rows_as(ar.FailureRow, await gw.fetch("audit_failures", None))
    got = {(r.error_class, r.error): (r.attempts_failed, r.jobs_failed, r.jobs) for r in rows}
    assert got == {
        ("permanent", "CUDA out of memory"): (2, 2, 2),
        ("permanent", "bad prompt"): (1, 1, 1),
        ("transient", "connection reset"): (1, 0, 1),
    }
    assert rows[0].error == "CUDA out of memory"
    last_at = fold.replay(await gw.load_events(last)).finished_at
    assert rows[0].last_seen == last_at
    later = await gw.fetch("audit_failures", BASE + timedelta(minutes=30))
    assert {(r["error"], r["jobs_failed"]) for r in later} == {
        ("CUDA out of memory", 1),
        ("bad prompt", 1),
    }


async def test_stuck_lists_expired_leases_and_old_pending(gw: Gateway) -> None:
    """audit_stuck finds running-past-lease and pending-too-long jobs, not fresh ones."""
    held = await job_at(gw, BASE)
    await append(gw, held, [_claimed(held, BASE + timedelta(seconds=1), lease_s=30)])
    old = await job_at(gw, BASE)
    fresh = await insert_job(gw)
    await seed_done(gw, BASE, 10, 10, 10)
    rows = ar.rows_as(ar.StuckRow, await gw.fetch("audit_stuck", 600.0, 100))
    assert {(r.id, r.reason) for r in rows} == {
        (held, "lease expired"),
        (old, "pending too long"),
    }
    assert all(r.overdue_s > 3600 for r in rows)
    assert fresh not in {r.id for r in rows}
    assert "lease expired" in ar.format_stuck(rows)


async def test_throughput_per_hour_by_outcome(gw: Gateway) -> None:
    """audit_throughput buckets terminal events by UTC hour and outcome."""
    await seed_latency_set(gw)  # completions at 10:00+, ..., 11:30+ (all < 1 min later)
    await seed_failed(gw, BASE + timedelta(minutes=5), "boom")
    rows = ar.rows_as(ar.ThroughputRow, await gw.fetch("audit_throughput", None))
    pivot = dict(ar.throughput_table(rows))
    assert pivot == {
        BASE: {"done": 6, "failed": 1, "cancelled": 0},
        BASE + timedelta(hours=1): {"done": 4, "failed": 0, "cancelled": 0},
    }
    since = await gw.fetch("audit_throughput", BASE + timedelta(hours=1))
    assert [(r["outcome"], r["jobs"]) for r in since] == [("done", 4)]


async def test_owner_lists_jobs_with_image_paths(gw: Gateway) -> None:
    """audit_owner shows that owner's jobs, newest first, with the stored image."""
    done = await seed_done(gw, BASE, 10, 10, 10, owner=OTHER_OWNER)
    pending = await insert_job(gw, owner=OTHER_OWNER)
    await insert_job(gw, owner=OWNER)
    rows = ar.rows_as(ar.OwnerJobRow, await gw.fetch("audit_owner", OTHER_OWNER, 10))
    assert [(r.id, r.status) for r in rows] == [(pending, "pending"), (done, "done")]
    assert rows[1].storage_path is not None and rows[1].storage_path.startswith("2026-01-01/")
    assert rows[1].local_path == f"/out/{rows[1].storage_path}"
    assert rows[0].storage_path is None


def test_views_are_granted_to_service_role_only(database_url: str) -> None:
    """service_role may SELECT the audit views; authenticated and anon may not."""
    rows = run_as(database_url, None, "service_role", "SELECT count(*) FROM imagen.job_timeline")
    assert rows[0]["count"] == 0
    for role in ("authenticated", "anon"):
        for view in ("job_timeline", "job_stage_latency"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                run_as(database_url, OWNER, role, f"SELECT * FROM imagen.{view}")


async def test_cli_latency_json_and_plots(gw: Gateway, database_url: str, tmp_path: Path) -> None:
    """`audit latency --json` prints the numbers; --plot writes PNGs for latency and throughput."""
    await seed_latency_set(gw)
    lat_png = tmp_path / "latency.png"
    out = await run_cli(database_url, "audit", "latency", "--backend", "mock", "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == []  # older than the 7-day default
    out = await run_cli(
        database_url, "audit", "latency", "--backend", "mock", "--json", "--since", "all"
    )
    assert out.returncode == 0, out.stderr.decode()
    rows = json.loads(out.stdout)
    assert {r["stage"]: r["p50_ms"] for r in rows}["queue_wait"] == pytest.approx(5500)
    out = await run_cli(
        database_url, "audit", "latency", "--since", "2026-01-01", "--plot", str(lat_png)
    )
    assert out.returncode == 0, out.stderr.decode()
    assert "queue_wait" in out.stdout.decode()
    assert lat_png.read_bytes().startswith(b"\x89PNG")
    thr_png = tmp_path / "throughput.png"
    out = await run_cli(
        database_url, "audit", "throughput", "--since", "2026-01-01", "--plot", str(thr_png)
    )
    assert out.returncode == 0, out.stderr.decode()
    assert "2026-01-01 10:00" in out.stdout.decode()
    assert thr_png.read_bytes().startswith(b"\x89PNG")


async def test_failures_group_a_given_up_job_under_its_cause(gw: Gateway) -> None:
    """A job that failed two transient attempts and then gave up is one row under the
    attempts' cause (2 failed attempts, 1 job ended failed), not a row per message; a job
    that failed with no failed attempt (its lease expired) is a row of its own."""
    job = await job_at(gw, BASE)
    at = BASE + timedelta(seconds=1)

    def failed_attempt(n: int) -> list[ev.Event]:
        t = at + timedelta(seconds=10 * n)
        return [
            _claimed(job, t, attempt=n),
            _started(job, t + MS),
            ev.GenerationFailed(
                job_id=job,
                occurred_at=t + 2 * MS,
                actor="executor",
                worker_id=W,
                error="HTTP 503",
                error_class="transient",
            ),
        ]

    requeue = ev.JobRequeued(
        job_id=job,
        occurred_at=at + timedelta(seconds=15),
        actor="executor",
        worker_id=W,
        reason="retry",
    )
    gave_up = ev.JobFailed(
        job_id=job,
        occurred_at=at + timedelta(seconds=30),
        actor="executor",
        worker_id=W,
        error="HTTP 503 (gave up after 2 attempts)",
        error_class="transient",
    )
    await append(gw, job, [*failed_attempt(1), requeue])
    await append(gw, job, [*failed_attempt(2), gave_up])
    reaped = await job_at(gw, BASE)
    await append(
        gw,
        reaped,
        [
            _claimed(reaped, at, lease_s=1),
            ev.JobFailed(
                job_id=reaped,
                occurred_at=at + timedelta(seconds=5),
                actor="reaper",
                worker_id=W,
                error="lease expired after 1 attempts",
                error_class="transient",
            ),
        ],
    )
    rows = ar.rows_as(ar.FailureRow, await gw.fetch("audit_failures", None))
    got = {(r.error_class, r.error): (r.attempts_failed, r.jobs_failed, r.jobs) for r in rows}
    assert got == {
        ("transient", "HTTP 503"): (2, 1, 1),
        ("transient", "lease expired after 1 attempts"): (0, 1, 1),
    }


async def test_cli_failures_stuck_owner(gw: Gateway, database_url: str) -> None:
    """The other reports run end to end; a bad --since is a usage error (exit 2)."""
    await seed_failed(gw, BASE, "CUDA out of memory")
    pending = await job_at(gw, BASE, owner=OTHER_OWNER)
    # Seeded on 2026-01-01: outside the default window (7 days), inside --since all.
    out = await run_cli(database_url, "audit", "failures")
    assert out.returncode == 0 and "no failures in that window" in out.stdout.decode()
    out = await run_cli(database_url, "audit", "failures", "--since", "all")
    assert out.returncode == 0 and "CUDA out of memory" in out.stdout.decode()
    out = await run_cli(database_url, "audit", "stuck", "--pending-older-than", "60")
    assert out.returncode == 0 and str(pending) in out.stdout.decode()
    out = await run_cli(database_url, "audit", "owner", str(OTHER_OWNER))
    assert out.returncode == 0 and str(pending) in out.stdout.decode()
    out = await run_cli(database_url, "audit", "failures", "--since", "last tuesday")
    assert out.returncode == 2 and b"argument --since" in out.stderr


# The 0005 definition of imagen.job_stage_latency (five lookups per job), kept here as the
# reference the one-pass imagen.job_stage_latency_since of 0014 must agree with.
STAGE_LATENCY_0005 = """
SELECT j.id AS job_id, j.backend, j.status, j.attempts, j.created_at, j.finished_at,
       sub.occurred_at AS submitted_at, claim.occurred_at AS first_claimed_at,
       gs.occurred_at AS generation_started_at, gok.occurred_at AS generation_succeeded_at,
       done.occurred_at AS completed_at,
       (extract(epoch FROM claim.occurred_at - sub.occurred_at) * 1000)::float8 AS queue_wait_ms,
       (extract(epoch FROM gok.occurred_at - gs.occurred_at) * 1000)::float8 AS generation_ms,
       (extract(epoch FROM done.occurred_at - gok.occurred_at) * 1000)::float8 AS upload_ms,
       (extract(epoch FROM done.occurred_at - sub.occurred_at) * 1000)::float8 AS total_ms
FROM imagen.jobs j
LEFT JOIN LATERAL (SELECT e.occurred_at FROM imagen.job_events e
    WHERE e.job_id = j.id AND e.type = 'JobSubmitted' ORDER BY e.seq LIMIT 1) sub ON true
LEFT JOIN LATERAL (SELECT e.occurred_at FROM imagen.job_events e
    WHERE e.job_id = j.id AND e.type = 'JobClaimed' ORDER BY e.seq LIMIT 1) claim ON true
LEFT JOIN LATERAL (SELECT e.seq, e.occurred_at FROM imagen.job_events e
    WHERE e.job_id = j.id AND e.type = 'GenerationSucceeded' ORDER BY e.seq DESC LIMIT 1) gok
    ON true
LEFT JOIN LATERAL (SELECT e.occurred_at FROM imagen.job_events e
    WHERE e.job_id = j.id AND e.type = 'GenerationStarted' AND e.seq < gok.seq
    ORDER BY e.seq DESC LIMIT 1) gs ON true
LEFT JOIN LATERAL (SELECT e.occurred_at FROM imagen.job_events e
    WHERE e.job_id = j.id AND e.type = 'JobCompleted' ORDER BY e.seq DESC LIMIT 1) done ON true
WHERE j.created_at >= $1
ORDER BY j.id
"""


async def seed_retried(gw: Gateway, created: datetime) -> uuid.UUID:
    """Two attempts: the first fails after starting, the second succeeds; its durations are
    the second attempt's."""
    job = await job_at(gw, created)
    at = created + timedelta(seconds=2)
    await append(
        gw,
        job,
        [
            _claimed(job, at),
            _started(job, at + MS),
            ev.JobRequeued(
                job_id=job,
                occurred_at=at + 5 * MS,
                actor="reaper",
                worker_id=W,
                reason="lease expired",
            ),
            _claimed(job, at + 10 * MS, attempt=2),
            _started(job, at + 20 * MS),
            ev.GenerationSucceeded(
                job_id=job,
                occurred_at=at + 50 * MS,
                actor="executor",
                worker_id=W,
                backend="mock",
                model="mock-v1",
                seed=7,
                mime="image/png",
                bytes=10,
                sha256=hashlib.sha256(b"x").hexdigest(),
                latency_ms=30,
            ),
        ],
    )
    return job


async def test_stage_latency_in_one_pass_agrees_with_the_0005_view(gw: Gateway) -> None:
    """The view (and the function behind it) give the 0005 definition's rows exactly: done,
    failed, retried, running and pending jobs, over all time and over a window."""
    await seed_latency_set(gw)
    await seed_failed(gw, BASE + timedelta(minutes=5), "boom")
    await seed_retried(gw, BASE + timedelta(minutes=50))
    await job_at(gw, BASE + timedelta(hours=3))
    await insert_job(gw)
    cols = "*"
    for since in (datetime(2000, 1, 1, tzinfo=UTC), BASE + timedelta(minutes=45)):
        old = await gw.fetch_sql(STAGE_LATENCY_0005, since)
        new = await gw.fetch_sql(
            f"SELECT {cols} FROM imagen.job_stage_latency_since($1) ORDER BY job_id", since
        )
        view = await gw.fetch_sql(
            f"SELECT {cols} FROM imagen.job_stage_latency WHERE created_at >= $1 ORDER BY job_id",
            since,
        )
        assert len(old) >= 4
        assert new == old
        assert view == old


async def test_stuck_lists_the_most_overdue_and_counts_the_rest(
    gw: Gateway, database_url: str
) -> None:
    """audit stuck lists at most --limit jobs (the most overdue) and says how many more."""
    ages = [timedelta(hours=h) for h in (5, 1, 3, 4, 2)]
    jobs = {age: await job_at(gw, datetime.now(UTC) - age) for age in ages}
    rows = ar.rows_as(ar.StuckRow, await gw.fetch("audit_stuck", 600.0, 2))
    assert [r.id for r in rows] == [jobs[timedelta(hours=5)], jobs[timedelta(hours=4)]]
    assert {r.total for r in rows} == {5}
    assert "+3 more stuck job(s) not listed" in ar.format_stuck(rows)
    out = await run_cli(database_url, "audit", "stuck", "--limit", "4")
    text = out.stdout.decode()
    assert out.returncode == 0 and "+1 more stuck job(s) not listed" in text
    assert str(jobs[timedelta(hours=1)]) not in text
