"""The dashboard in a real browser: a job goes pending -> running -> done on the page without
a reload, its page shows the timeline, verify result and image, and Cancel works on a pending
job and on a running one."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.browser.conftest import start_dashboard, stop
from tests.support.jobs import OWNER
from tests.support.worker import make_config, worker_process

pytestmark = [pytest.mark.db, pytest.mark.browser]

# Cancelling a RUNNING job is the worker's part of job control (worker/control.py, issue 17):
# with it the job ends cancelled; a tree without it records the request and finishes the job.
WORKER_CANCELS_RUNNING = importlib.util.find_spec("imagen_actors.worker.control") is not None
LATENCY_MS = 8000
STEPS = 8
TIMEOUT_MS = 60_000


def sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    # In a thread of its own: Playwright's sync driver keeps a loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result()


def submit(dsn: str, prompt: str) -> str:
    rows = sql(
        dsn,
        "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
        "VALUES ($1, $2, 'mock', 256, 256) RETURNING id",
        OWNER,
        prompt,
    )
    return str(rows[0]["id"])


def status(dsn: str, job: str) -> str:
    return str(sql(dsn, "SELECT status FROM imagen.jobs WHERE id = $1", uuid.UUID(job))[0][0])


def wait_status(dsn: str, job: str, wanted: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = status(dsn, job)
        if now in wanted:
            return now
        time.sleep(0.1)
    raise AssertionError(f"job {job} still {status(dsn, job)}, not {wanted}, after {timeout} s")


def test_dashboard_live_job_page_and_cancel(
    database_url: str, tmp_path: Path, artifacts: Path, chromium: Any
) -> None:
    cfg = make_config(
        tmp_path,
        database_url,
        name="browser",
        backends={"mock": {"type": "mock", "latency_ms": LATENCY_MS, "steps": STEPS}},
    )
    config_path = tmp_path / "imagen-browser.yaml"
    assert cfg.database_url() == database_url
    worker = worker_process(config_path, name="browser")
    serve, url = start_dashboard(config_path, tmp_path / "serve.log")
    page = chromium.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(url)
        page.wait_for_selector("#live-state:text('live')")
        page.evaluate("window.notReloaded = true")

        first = submit(database_url, "a first owl at dusk")
        second = submit(database_url, "a second owl, waiting its turn")
        row = f'#recent tr[data-job="{second}"] td.status'
        # The second job waits while the first one has the (single) generation slot.
        page.wait_for_selector(f"{row}:text-is('pending')")
        page.wait_for_selector(f"{row}:text-is('running')")
        page.wait_for_selector(f'#running tr[data-job="{second}"] progress')
        page.screenshot(path=str(artifacts / "running.png"), full_page=True)
        page.wait_for_selector(f"{row}:text-is('done')", timeout=TIMEOUT_MS)
        page.wait_for_selector(f'#recent tr[data-job="{first}"] td.status:text-is("done")')
        assert page.evaluate("window.notReloaded") is True, "the page reloaded"
        assert page.evaluate("window.imagenUpdates") > 2
        page.screenshot(path=str(artifacts / "done.png"), full_page=True)

        page.click(f'#recent tr[data-job="{second}"] a')
        page.wait_for_url(f"**/jobs/{second}")
        assert page.text_content("#job-status") == "done"
        assert "OK:" in (page.text_content("#verify") or "")
        timeline = page.text_content("#timeline") or ""
        for event in ("JobSubmitted", "JobClaimed", "GenerationProgress", "JobCompleted"):
            assert event in timeline
        page.wait_for_function("document.getElementById('image').naturalWidth === 256")
        assert '"local_path"' in (page.text_content("#metadata") or "")
        page.screenshot(path=str(artifacts / "job.png"), full_page=True)

        # Cancel: a pending job ends cancelled at once; a running one gets the request.
        running = submit(database_url, "an owl to stop half-way")
        waiting = submit(database_url, "an owl nobody needs")
        wait_status(database_url, running, {"running"})
        assert status(database_url, waiting) == "pending"
        page.goto(f"{url}/jobs/{waiting}")
        page.click("#cancel")
        page.wait_for_selector("#note:text('Cancelled.')")
        assert page.text_content("#job-status") == "cancelled"
        assert status(database_url, waiting) == "cancelled"
        page.wait_for_selector("#retry")

        page.goto(f"{url}/jobs/{running}")
        assert page.text_content("#job-status") == "running"
        page.click("#cancel")
        page.wait_for_selector("#note:text('Cancel requested')")
        page.screenshot(path=str(artifacts / "cancel-requested.png"), full_page=True)
        types = [
            r["type"]
            for r in sql(
                database_url,
                "SELECT type FROM imagen.job_events WHERE job_id = $1 ORDER BY seq",
                uuid.UUID(running),
            )
        ]
        assert "JobCancelRequested" in types
        expected = "cancelled" if WORKER_CANCELS_RUNNING else "done"
        final = wait_status(database_url, running, {"done", "failed", "cancelled"})
        assert final == expected
        # The job page follows it live, without a reload.
        page.wait_for_selector(f"#job-status:text-is('{expected}')")
        page.screenshot(path=str(artifacts / "cancelled.png"), full_page=True)

        # The overview once there is history: charts, failures, cancellations (docs/dashboard.png).
        busy = submit(database_url, "an owl for the screenshot")
        wait_status(database_url, busy, {"running"})
        page.goto(url)
        page.wait_for_selector(f'#running tr[data-job="{busy}"] progress')
        control = page.text_content("#control") or ""
        assert "JobCancelRequested" in control and "JobCancelled" in control
        assert "no data yet" not in (page.text_content(".charts") or "")
        page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    finally:
        page.close()
        stop(serve)
        stop(worker)
