"""Every fault at once (IMAGEN_CHAOS_FULL=1 only): two worker processes sharing the queue,
kill -9 at random points and restarts (now and then under a new name, so only another
worker's Reaper recovers the dead one's jobs), Postgres restarted under them, a storage server
failing 20% of requests, and a backend failing 10% (transiently or for good).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from imagen_actors.db.gateway import Gateway
from imagen_actors.db.migrations import migrate
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
from tests.chaos.pg_restart import RestartableCluster
from tests.fakes.supabase_storage import (
    SERVICE_KEY,
    FakeSupabaseStorage,
    Faults,
    serve_fake_storage,
)
from tests.support.worker import make_config

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(not FULL, reason="the combined campaign runs with IMAGEN_CHAOS_FULL=1"),
]

JOBS, CYCLES = 1000, 40


async def test_all_faults_combined(
    cluster: RestartableCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r, ctx = rng("combined"), context("combined")
    dsn = await trio.to_thread.run_sync(cluster.new_database)
    async with Gateway.open(dsn) as gw:
        await migrate(gw)
        await insert_jobs(gw, JOBS * 7 // 10, r=r, backend="mock")
        await insert_jobs(gw, JOBS * 3 // 10, r=r, backend="mock-hard")
    faults = Faults(0.2, r)
    fake = FakeSupabaseStorage(faults=faults, hang_s=1.0, reply_delay_s=0.02)
    backends = {
        "mock": {"type": "mock", "latency_ms": 30, "fail_rate": 0.1},
        "mock-hard": {
            "type": "mock",
            "latency_ms": 30,
            "fail_rate": 0.1,
            "fail_class": "permanent",
        },
    }
    storage = {"type": "supabase", "timeout_s": 0.4, "max_attempts": 3}
    names = ["chaos:a", "chaos:b", "chaos:c"]
    async with serve_fake_storage(fake):
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
        configs = {}
        for name in names:
            short = name.split(":")[1]
            make_config(tmp_path, dsn, name=short, lease_s=5, backends=backends, storage=storage)
            configs[name] = tmp_path / f"imagen-{short}.yaml"
        live = {n: Worker.spawn(configs[n], n) for n in names[:2]}
        plan: list[str] = []
        try:
            for cycle in range(CYCLES):
                # Same draws every cycle, so the seed fixes the plan.
                victim, delay = r.choice(sorted(live)), r.uniform(0.2, 1.5)
                renamed, restart_pg = r.random() < 0.15, r.random() < 0.15
                outage = r.uniform(0.2, 2.5)
                await trio.sleep(delay)
                await live.pop(victim).kill9()
                step = f"{cycle}: +{delay:.2f}s kill {victim}"
                if restart_pg:
                    await trio.to_thread.run_sync(cluster.stop)
                    await trio.sleep(outage)
                    await trio.to_thread.run_sync(cluster.start)
                    step += f", Postgres down {outage:.2f}s"
                spare = next(n for n in names if n not in live and n != victim)
                name = spare if renamed else victim
                live[name] = Worker.spawn(configs[name], name)
                for w in live.values():
                    assert w.proc.poll() is None, f"{ctx}: {w.name} exited\n{w.log_tail()}"
                async with Gateway.open(dsn) as gw:
                    plan.append(f"{step}, restart as {name}; {await count_terminal(gw)} settled")
            print("plan:\n  " + "\n  ".join(plan))
            async with Gateway.open(dsn) as gw:
                await wait_settled(gw, 300, ctx)
        finally:
            statuses = {n: await w.stop() for n, w in live.items()}
        assert set(statuses.values()) == {0}, f"{ctx}: exits {statuses}"
        objects = {key: blob.data for (_b, key), blob in fake.objects.items()}
        async with Gateway.open(dsn) as gw:
            summary = await check_invariants(gw, dsn, objects, jobs=JOBS, context=ctx)
    print(f"{ctx}\n{describe(summary)}\nstorage faults {dict(faults.injected)}")
    assert fake.violations == [], ctx
