from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import pytest
import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core.errors import (
    CancelRequestedError,
    ConcurrencyError,
    JobNotFoundError,
    LeaseLostError,
)
from imagen_actors.core.fold import JobState
from imagen_actors.db import transactions
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.sql import query
from tests.support.jobs import assert_replay_matches, insert_job
from tests.support.roles import run_as

pytestmark = pytest.mark.db


async def test_claim_sets_lease_and_appends_event(gateway: Gateway) -> None:
    """A claim: running, worker_id, lease, attempts+1, started_at, JobClaimed and
    GenerationStarted, one trip."""
    job = await insert_job(gateway)
    t = await gateway.claim(dc.claim("h:w", 60))
    assert t is not None and t.state.id == job
    row = await gateway.fetchrow("load_job", job)
    assert row is not None
    assert (row["status"], row["worker_id"], row["attempts"], row["version"]) == (
        "running",
        "h:w",
        1,
        3,
    )
    assert (row["lease_expires_at"] - row["started_at"]).total_seconds() == 60
    assert await gateway.claim(dc.claim("h:w", 60)) is None
    await assert_replay_matches(gateway, job)


async def test_claims_oldest_first(gateway: Gateway) -> None:
    """The oldest pending job is claimed first."""
    first = await insert_job(gateway, "first")
    await insert_job(gateway, "second")
    t = await gateway.claim(dc.claim("w", 60))
    assert t is not None and t.state.id == first


async def test_two_concurrent_transitions_both_apply_in_turn(
    gateway: Gateway, database_url: str
) -> None:
    """Two gateways advancing the same job at once: the row lock orders them, and the second
    folds onto the first's commit (seq 4 then 5), never onto the version both started from."""
    job = await insert_job(gateway)
    await gateway.claim(dc.claim("w", 60))
    seen: list[int] = []

    def recording_decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
        seen.append(state.version)
        return dc.extend_lease("w", 60, attempt=1)(state, now)

    async with Gateway.open(database_url) as other:
        async with trio.open_nursery() as n:
            n.start_soon(gateway.transition, job, recording_decide)
            n.start_soon(other.transition, job, recording_decide)
    assert sorted(seen) == [3, 4]
    events = await gateway.load_events(job)
    assert [type(e).__name__ for e in events[3:]] == ["LeaseExtended", "LeaseExtended"]
    state = await assert_replay_matches(gateway, job)
    assert state.version == 5


def _race_from_the_same_version(dsn: str, job: uuid.UUID) -> list[str]:
    """Two writers that both read the job at version 3 (no row lock: what two workers would
    see if the lock were bypassed) and then each append through the gateway's own append
    step. The second writer's outcome is returned for each: 'won' or the error's name."""

    async def go() -> list[str]:
        first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:
            for conn in (first, second):
                await transactions.init_connection(conn)
            tx1, tx2 = first.transaction(), second.transaction()
            await tx1.start()
            await tx2.start()
            stale1 = await first.fetch(query("load_events_with_clock"), job)
            stale2 = await second.fetch(query("load_events_with_clock"), job)
            assert len(stale1) == len(stale2) == 3
            outcomes: list[str] = []
            for conn, tx, rows in ((first, tx1, stale1), (second, tx2, stale2)):
                try:
                    locked = transactions.replay_stream(job, rows)
                    await transactions.advance(
                        conn, job, locked, dc.extend_lease("w", 60, attempt=1)
                    )
                    await tx.commit()
                    outcomes.append("won")
                except (ConcurrencyError, asyncpg.UniqueViolationError) as exc:
                    await tx.rollback()
                    outcomes.append(type(exc).__name__)
            return outcomes
        finally:
            await first.close()
            await second.close()

    return asyncio.run(go())


async def test_two_writers_from_the_same_version_one_wins(
    gateway: Gateway, database_url: str
) -> None:
    """The optimistic guard, under the row lock: of two writers that both read version 2, the
    first commits and the second is refused, so the log never holds two events at one seq and
    the projection is the first writer's."""
    job = await insert_job(gateway)
    await gateway.claim(dc.claim("w", 60))
    first, second = await trio.to_thread.run_sync(_race_from_the_same_version, database_url, job)
    assert first == "won"
    assert second in {"ConcurrencyError", "UniqueViolationError"}, second
    seqs = await gateway.fetch_sql(
        "SELECT seq, count(*) AS n FROM imagen.job_events WHERE job_id = $1 GROUP BY seq", job
    )
    assert sorted((r["seq"], r["n"]) for r in seqs) == [(1, 1), (2, 1), (3, 1), (4, 1)]
    state = await assert_replay_matches(gateway, job)
    assert state.version == 4


async def test_a_projection_behind_its_log_is_not_overwritten(gateway: Gateway) -> None:
    """The version guard of append_and_project: the UPDATE writes the projection only when the
    row is still at the version the writer folded from. Here an event reached the log without
    the projection (a raw INSERT, version still 3): the transition is refused whole, by the
    guard (folded from seq 4, found version 3) or, when the worker folds from the state it
    kept at version 3 (db/known_streams), by the unique (job_id, seq) of its seq 4."""
    job = await insert_job(gateway)
    await gateway.claim(dc.claim("w", 60))
    (claimed,) = await gateway.fetch_sql(
        "SELECT lease_expires_at FROM imagen.jobs WHERE id = $1", job
    )
    await gateway.execute_sql(
        "INSERT INTO imagen.job_events (job_id, seq, type, data, actor, worker_id) "
        "VALUES ($1, 4, 'LeaseExtended', $2, 'executor', 'w')",
        job,
        {"schema_version": 1, "lease_expires_at": claimed["lease_expires_at"].isoformat()},
    )
    with pytest.raises(ConcurrencyError, match=r"moved past version 4|advanced the job first"):
        await gateway.transition(job, dc.extend_lease("w", 60, attempt=1))
    row = await gateway.fetchrow("load_job", job)
    assert row is not None and row["version"] == 3
    assert len(await gateway.load_events(job)) == 4


def test_seq_conflict_maps_to_concurrency_error(database_url: str) -> None:
    """A raw duplicate (job_id, seq) is stopped by the unique constraint."""
    job = run_as(
        database_url,
        None,
        None,
        "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
        "VALUES (gen_random_uuid(), 'o', 'mock', 64, 64) RETURNING id",
    )[0]["id"]
    with pytest.raises(asyncpg.UniqueViolationError, match="job_events_job_seq_unique"):
        run_as(
            database_url,
            None,
            None,
            "INSERT INTO imagen.job_events (job_id, seq, type, actor) "
            "VALUES ($1, 1, 'JobSubmitted', 'x')",
            job,
        )


async def test_gateway_maps_seq_conflict(gateway: Gateway) -> None:
    """Through the gateway the same conflict is our ConcurrencyError."""
    job = await insert_job(gateway)
    with pytest.raises(ConcurrencyError):
        await gateway.execute_sql(
            "INSERT INTO imagen.job_events (job_id, seq, type, actor) "
            "VALUES ($1, 1, 'JobSubmitted', 'x')",
            job,
        )


async def test_lost_lease_writes_nothing(gateway: Gateway) -> None:
    """A worker that lost its lease gets LeaseLostError and the log is unchanged."""
    job = await insert_job(gateway)
    await gateway.claim(dc.claim("a", 60))
    with pytest.raises(LeaseLostError):
        await gateway.transition(job, dc.extend_lease("b", 60, attempt=1))
    assert len(await gateway.load_events(job)) == 3


async def test_a_transition_after_another_writer_reads_the_stream_again(gateway: Gateway) -> None:
    """The worker keeps the state it wrote last and skips the reload only at that version: a
    cancel the UI appended since is seen, and a second worker's claim fences the first."""
    job = await insert_job(gateway)
    assert await gateway.claim(dc.claim("a", 60)) is not None
    await gateway.transition(job, dc.extend_lease("a", 60, attempt=1))
    assert await gateway.cancel_job(job, "stop it") == "running"
    with pytest.raises(CancelRequestedError):
        await gateway.transition(job, dc.extend_lease("a", 60, attempt=1))
    await assert_replay_matches(gateway, job)

    other = await insert_job(gateway, "another owl")
    assert await gateway.claim(dc.claim("a", 60)) is not None
    async with Gateway.open(gateway.dsn, pool_size=1) as second:
        await second.transition(other, dc.reap("a", own=True))
        claimed = await second.claim(dc.claim("b", 60))
        assert claimed is not None and claimed.state.id == other
    with pytest.raises(LeaseLostError):
        await gateway.transition(other, dc.extend_lease("a", 60, attempt=1))
    await assert_replay_matches(gateway, other)


def _commit_modes_around_a_claim(dsn: str) -> tuple[str, str]:
    """synchronous_commit inside a claim's transaction, and in the next transaction."""

    async def go() -> tuple[str, str]:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                rows = await conn.fetch(query("claim_next_and_load_events"), ["mock"])
                assert rows, "a pending job was claimed"
                during = await conn.fetchval("SHOW synchronous_commit")
            after = await conn.fetchval("SHOW synchronous_commit")
            return during, after
        finally:
            await conn.close()

    return asyncio.run(go())


async def test_only_the_claim_commits_without_waiting_for_its_flush(
    gateway: Gateway, database_url: str
) -> None:
    """A claim lost in a crash is a claim that never happened, so its commit does not wait
    for the WAL flush; the setting ends with its transaction, every other write waits."""
    await insert_job(gateway)
    during, after = await trio.to_thread.run_sync(_commit_modes_around_a_claim, database_url)
    assert (during, after) == ("off", "on")


async def test_unknown_job_is_not_found(gateway: Gateway) -> None:
    """A transition on a missing id says so."""
    with pytest.raises(JobNotFoundError):
        await gateway.transition(uuid.uuid4(), dc.extend_lease("w", 60, attempt=1))


async def test_eight_claimers_over_200_jobs_claim_each_once(
    gateway: Gateway, database_url: str
) -> None:
    """8 connections claiming concurrently: every job claimed exactly once (SKIP LOCKED)."""
    jobs = [await insert_job(gateway, f"job {i}") for i in range(200)]
    claimed: list[uuid.UUID] = []

    async def claimer(name: str) -> None:
        async with Gateway.open(database_url, pool_size=2) as gw:
            while True:
                t = await gw.claim(dc.claim(name, 60))
                if t is None:
                    return
                claimed.append(t.state.id)

    async with trio.open_nursery() as n:
        for i in range(8):
            n.start_soon(claimer, f"w{i}")
    counts = Counter(claimed)
    assert set(counts) == set(jobs)
    assert max(counts.values()) == 1
    for job in jobs[:20]:
        await assert_replay_matches(gateway, job)


async def test_requeued_job_waits_for_run_after(gateway: Gateway) -> None:
    """A job requeued with backoff is not claimable before retry_at."""
    job = await insert_job(gateway)
    await gateway.claim(dc.claim("w", 60))
    await gateway.transition(
        job, dc.failure("w", "HTTP 503", "transient", "executor", attempt=1, rng=lambda: 0.5)
    )
    assert await gateway.claim(dc.claim("w", 60)) is None
    assert await gateway.fetchval("next_run_after") is not None
    await assert_replay_matches(gateway, job)


async def test_pool_releases_leave_no_timers_behind(gateway: Gateway) -> None:
    """Every pool release used to queue a cancelled 300 s timer (which trio-asyncio, the
    bridge then, kept until it expired: the worker's memory grew with each job, found by
    bench/soak.py); the pool arms none."""
    timers = gateway._loop.loop._scheduled  # the asyncio loop's timer heap
    before = len(timers)
    for _ in range(300):
        await gateway.ping()
    assert len(timers) - before < 10


async def test_status_counts_follow_every_transition_from_every_session(
    gateway: Gateway,
) -> None:
    """The maintained counters (schema 0014) agree with counting imagen.jobs after inserts,
    claims, failures and completions made on different pool connections (shards), and
    job_status_counts_rebuild() gives the same figures."""

    async def counted() -> dict[str, int]:
        rows = await gateway.fetch_sql(
            "SELECT status, count(*)::int AS n FROM imagen.jobs GROUP BY status"
        )
        return {r["status"]: r["n"] for r in rows}

    assert await gateway.status_counts() == {}
    jobs = [await insert_job(gateway, f"job {i}") for i in range(6)]
    assert await gateway.status_counts() == {"pending": 6}

    async def claim_one() -> None:
        await gateway.claim(dc.claim("w", 60))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(claim_one)
    await gateway.transition(
        jobs[0], dc.failure("w", "bad prompt", "permanent", "executor", attempt=1)
    )
    await gateway.transition(
        jobs[1], dc.failure("w", "HTTP 503", "transient", "executor", attempt=1)
    )
    expected = await counted()
    assert expected == {"pending": 3, "running": 2, "failed": 1}
    assert await gateway.status_counts() == expected
    await gateway.execute_sql("SELECT imagen.job_status_counts_rebuild()")
    assert await gateway.status_counts() == expected
