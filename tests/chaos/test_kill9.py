"""kill -9 the worker at random points across a burst of jobs, restarting it each time.

The worker runs as a real process against Supabase Storage (the loopback fake) whose upload
replies are held back a little after the object is stored, so a kill often lands between
"object stored" and "completion committed": the re-run must reuse the same key. Most restarts
keep the worker's name (start-up ``requeue_own`` recovers its jobs at once); a few use another
name and wait until its Reaper has taken over the dead worker's expired lease.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import trio

from imagen_actors.db.gateway import Gateway
from tests.chaos.campaign import (
    FULL,
    Worker,
    context,
    count_terminal,
    insert_jobs,
    rng,
    wait_settled,
)
from tests.chaos.invariants import check_invariants, describe
from tests.fakes.supabase_storage import SERVICE_KEY, FakeSupabaseStorage, serve_fake_storage
from tests.support.worker import make_config

pytestmark = pytest.mark.chaos

JOBS, KILLS, REAPER_CYCLES = (1000, 60, 4) if FULL else (300, 22, 2)
LEASE_S = 5.0
PRIMARY, OTHER = "chaos:w1", "chaos:w2"


async def held_by(gw: Gateway, worker_id: str) -> list[object]:
    rows = await gw.fetch_sql(
        "SELECT id FROM imagen.jobs WHERE status = 'running' AND worker_id = $1", worker_id
    )
    return [r["id"] for r in rows]


async def wait_leases_expired(gw: Gateway, worker_id: str) -> None:
    with trio.fail_after(LEASE_S + 5):
        while await gw.fetch_sql(
            "SELECT 1 FROM imagen.jobs WHERE status = 'running' AND worker_id = $1 "
            "AND lease_expires_at >= now()",
            worker_id,
        ):
            await trio.sleep(0.1)


async def kill_phases(gw: Gateway) -> Counter[str]:
    """For each requeue after a kill: the last thing the dead attempt had recorded."""
    rows = await gw.fetch_sql(
        "SELECT prev.type, count(*) AS n FROM imagen.job_events e "
        "JOIN imagen.job_events prev ON prev.job_id = e.job_id AND prev.seq = e.seq - 1 "
        "WHERE e.type IN ('JobRequeued', 'JobFailed') AND e.actor = 'reaper' GROUP BY prev.type"
    )
    return Counter({r["type"]: r["n"] for r in rows})


async def test_kill_9_at_random_points_then_everything_settles_once(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r, ctx = rng("kill9"), context("kill9")
    fake = FakeSupabaseStorage(reply_delay_s=0.03)
    async with serve_fake_storage(fake), Gateway.open(database_url) as gw:
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
        storage = {"type": "supabase", "timeout_s": 2.0}
        backends = {"mock": {"type": "mock", "latency_ms": 30}}
        for name in ("w1", "w2"):
            make_config(
                tmp_path,
                database_url,
                name=name,
                lease_s=LEASE_S,
                backends=backends,
                storage=storage,
            )
        configs = {PRIMARY: tmp_path / "imagen-w1.yaml", OTHER: tmp_path / "imagen-w2.yaml"}
        # A dozen jobs per storage key: reservations, variants and tombstones are in play.
        await insert_jobs(gw, JOBS, r=r, share_keys=JOBS // 12)
        reaper_cycles_at = set(r.sample(range(2, KILLS - 1), REAPER_CYCLES))
        plan: list[str] = []
        for cycle in range(KILLS):
            orphaned = await held_by(gw, PRIMARY)
            name = OTHER if cycle in reaper_cycles_at and orphaned else PRIMARY
            # Draw the same numbers every cycle, so the seed fixes the whole plan.
            at_startup, delay = r.random() < 0.2, r.uniform(0, 0.6)
            if name == OTHER:
                # Another host: only its Reaper can free what the dead worker held, once the
                # leases have run out (waited for here, with no worker running meanwhile).
                await wait_leases_expired(gw, PRIMARY)
            worker = Worker.spawn(configs[name], name)
            if name == OTHER:
                await worker.wait_listening()
                with trio.fail_after(15):
                    while set(orphaned) & set(await held_by(gw, PRIMARY)):
                        await trio.sleep(0.05)
                point = f"after reaping {len(orphaned)}"
            elif at_startup:
                point, delay = "after spawn", delay * 2
            else:
                await worker.wait_listening()
                point = "after listening"
            await trio.sleep(delay)
            await worker.kill9()
            plan.append(
                f"{cycle}: {name} {point} +{delay:.2f}s, {await count_terminal(gw)} settled"
            )
            if await count_terminal(gw) == JOBS:
                break
        print("kill plan:\n  " + "\n  ".join(plan))
        assert len(plan) >= KILLS, f"{ctx}: only {len(plan)} kills before the queue drained"

        final = Worker.spawn(configs[PRIMARY], PRIMARY)
        try:
            await wait_settled(gw, 120 if FULL else 60, ctx)
        finally:
            status = await final.stop()
        assert status == 0, f"{ctx}: the final worker exited {status}\n{final.log_tail()}"

        objects = {key: blob.data for (_b, key), blob in fake.objects.items()}
        summary = await check_invariants(gw, database_url, objects, jobs=JOBS, context=ctx)
        phases = await kill_phases(gw)
        print(f"{ctx}\n{describe(summary)}\nkilled after: {dict(phases)}")
        assert fake.violations == [], ctx
        restarts = summary.requeue_reasons["worker chaos:w1 restarted"]
        assert restarts >= KILLS // 2, f"{ctx}: only {restarts} jobs requeued at start-up"
        if any(OTHER in line for line in plan):
            reaped = summary.requeue_reasons["lease held by"] + sum(
                "lease expired" in e for e in summary.errors.values()
            )
            assert reaped >= 1, f"{ctx}: no job was requeued by another worker's Reaper"
