"""A backend that fails 10% of generations, under a real worker.

Two mock instances: ``mock`` fails transiently (retried with backoff while attempts remain),
``mock-hard`` fails permanently (failed at once). A third of the ``mock`` jobs get
``max_attempts = 1``, so a transient failure is also final for them. Both paths must show up:
jobs that failed, were retried and finished ``done``, and jobs that ended ``failed`` with the
backend's error text.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.campaign import FULL, context, insert_jobs, rng, wait_settled
from tests.chaos.invariants import check_invariants, local_objects
from tests.support.worker import make_config, running_worker

pytestmark = pytest.mark.chaos

JOBS = 1000 if FULL else 300
FAIL_RATE = 0.1
INJECTED = f"injected failure (fail_rate {FAIL_RATE})"


async def test_backend_failing_10_percent_retries_or_fails_every_job_cleanly(
    database_url: str, tmp_path: Path
) -> None:
    r, ctx = rng("flaky-backend"), context("flaky-backend")
    backends = {
        "mock": {"type": "mock", "latency_ms": 10, "fail_rate": FAIL_RATE},
        "mock-hard": {
            "type": "mock",
            "latency_ms": 10,
            "fail_rate": FAIL_RATE,
            "fail_class": "permanent",
        },
    }
    cfg = make_config(tmp_path, database_url, name="backend", lease_s=5, backends=backends)
    async with running_worker(cfg) as (handle, gw):
        third = JOBS // 3
        await insert_jobs(gw, JOBS - 2 * third, r=r, backend="mock")
        await insert_jobs(gw, third, r=r, backend="mock", max_attempts=1)
        await insert_jobs(gw, third, r=r, backend="mock-hard")
        await wait_settled(gw, 120 if FULL else 60, ctx)
        objects = local_objects(tmp_path / "objects", "imagen-generated")
        summary = await check_invariants(gw, database_url, objects, jobs=JOBS, context=ctx)
        assert handle.restarts == {}, f"{ctx}: actors crashed: {handle.restarts}"
        retried_then_done = await gw.fetch_sql(
            "SELECT count(DISTINCT j.id) AS n FROM imagen.jobs j "
            "JOIN imagen.job_events e ON e.job_id = j.id AND e.type = 'GenerationFailed' "
            "WHERE j.status = 'done'"
        )
    print(f"{ctx}\ndone {summary.done}, failed {summary.failed}")
    assert retried_then_done[0]["n"] > 0, f"{ctx}: no transient failure was retried to done"
    errors = list(summary.errors.values())
    assert all(INJECTED in e for e in errors), f"{ctx}: unexpected failures {errors}"
    gave_up = [e for e in errors if "gave up after 1 attempt)" in e]
    permanent = [e for e in errors if e.startswith("mock-hard: ")]
    assert gave_up and permanent, f"{ctx}: final-failure paths not both seen: {errors}"
