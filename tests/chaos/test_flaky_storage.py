"""Supabase Storage that answers 500, stalls past the client's timeout, or stores the object and
then loses the reply, on 20% of requests (seeded), under a real worker.

The adapter retries each upload ``storage.max_attempts`` times; when those run out the job is
requeued with backoff and, on its last attempt, failed with the storage error (a third of the
jobs have a single attempt, so that happens). Either way: no job stuck, one object per done
job, and no object left behind by a job that failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.campaign import FULL, context, insert_jobs, rng, wait_settled
from tests.chaos.invariants import check_invariants, describe
from tests.fakes.supabase_storage import (
    SERVICE_KEY,
    FakeSupabaseStorage,
    Faults,
    serve_fake_storage,
)
from tests.support.worker import make_config, running_worker

pytestmark = pytest.mark.chaos

JOBS = 500 if FULL else 150
FAULT_RATE = 0.2
TIMEOUT_S = 0.25


async def test_storage_failing_20_percent_ends_every_job_with_no_orphans(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r, ctx = rng("flaky-storage"), context("flaky-storage")
    faults = Faults(FAULT_RATE, r)
    fake = FakeSupabaseStorage(faults=faults, hang_s=TIMEOUT_S * 2.5)
    async with serve_fake_storage(fake):
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
        # Two tries per upload, so some uploads run out: a dependency fault (issue 14), so the
        # store is marked unhealthy, the job requeued with its attempt refunded and its image
        # kept, and claims pause until the store's probe passes.
        storage = {"type": "supabase", "timeout_s": TIMEOUT_S, "max_attempts": 2}
        cfg = make_config(tmp_path, database_url, name="storage", lease_s=5, storage=storage)
        async with running_worker(cfg) as (handle, gw):
            # A third get one attempt: an upload that runs out of tries no longer fails them
            # (the attempt is refunded), and a lost reply's object is overwritten by the retry.
            await insert_jobs(gw, JOBS - JOBS // 3, r=r)
            await insert_jobs(gw, JOBS // 3, r=r, max_attempts=1)
            await wait_settled(gw, 240 if FULL else 90, ctx)
            objects = {key: blob.data for (_b, key), blob in fake.objects.items()}
            summary = await check_invariants(gw, database_url, objects, jobs=JOBS, context=ctx)
            assert handle.restarts == {}, f"{ctx}: actors crashed: {handle.restarts}"
    print(f"{ctx}\n{describe(summary)}\ninjected {dict(faults.injected)}")
    assert fake.violations == [], ctx
    assert set(faults.injected) == {"500", "hang", "lost"}, f"{ctx}: {faults.injected}"
    storage_requeues = summary.requeue_reasons["dependency fault: storage:"]
    assert storage_requeues > 0, f"{ctx}: no upload ever ran out of retries"
    for job, error in summary.errors.items():
        assert error.startswith("storage: "), f"{ctx}: job {job} failed with {error!r}"
