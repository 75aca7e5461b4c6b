from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import pytest
import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core.errors import ConcurrencyError, JobNotFoundError, LeaseLostError
from imagen_actors.core.fold import JobState
from imagen_actors.db.gateway import Gateway
from tests.support.jobs import assert_replay_matches, insert_job
from tests.support.roles import run_as

pytestmark = pytest.mark.db


async def test_claim_sets_lease_and_appends_event(gateway: Gateway) -> None:
    """A claim: running, worker_id, lease, attempts+1, started_at, JobClaimed, one trip."""
    job = await insert_job(gateway)
    t = await gateway.claim(dc.claim("h:w", 60))
    assert t is not None and t.state.id == job
    row = await gateway.fetchrow("load_job", job)
    assert row is not None
    assert (row["status"], row["worker_id"], row["attempts"], row["version"]) == (
        "running",
        "h:w",
        1,
        2,
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


async def test_two_concurrent_transitions_one_wins(gateway: Gateway, database_url: str) -> None:
    """Two writers advancing the same version: one commits, the other gets ConcurrencyError."""
    job = await insert_job(gateway)
    await gateway.claim(dc.claim("w", 60))
    gate = trio.Event()
    outcomes: list[str] = []

    def slow_decide(expected_version: int):  # type: ignore[no-untyped-def]
        def decide(state: JobState, now: datetime) -> Sequence[ev.Event]:
            if state.version != expected_version:
                raise ConcurrencyError(
                    f"expected version {expected_version}, found {state.version}"
                )
            return dc.extend_lease("w", 60, attempt=1)(state, now)

        return decide

    async with Gateway.open(database_url) as other:

        async def run(gw: Gateway) -> None:
            await gate.wait()
            try:
                await gw.transition(job, slow_decide(2))
                outcomes.append("won")
            except ConcurrencyError:
                outcomes.append("lost")

        async with trio.open_nursery() as n:
            n.start_soon(run, gateway)
            n.start_soon(run, other)
            await trio.sleep(0.05)
            gate.set()
    assert sorted(outcomes) == ["lost", "won"]
    await assert_replay_matches(gateway, job)


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
        await gateway.transition(job, dc.start_generation("b", 1, attempt=1))
    assert len(await gateway.load_events(job)) == 2


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
    """Every pool release used to queue a cancelled 300 s timer that trio-asyncio kept until
    it expired: the worker's memory grew with each job (bench/soak.py found it)."""
    timers = gateway._loop._timers  # trio-asyncio's timer heap: where the leak lived
    before = len(timers)
    for _ in range(300):
        await gateway.ping()
    assert len(timers) - before < 10
