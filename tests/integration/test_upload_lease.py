"""The jobs between generation and completion: leases while uploading, and abort.

Both were known weak spots that the chaos campaign's slow and flaky storage leans on:
- nothing renewed a lease during the upload, so an upload slower than ``worker.lease_s`` was
  reaped while still running and the job ran again (and again, until it failed);
- on abort, a finished image waiting for the Uploader (buffered, or the Executor blocked
  handing it over) was not given back: its job stayed ``running`` until its lease expired.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import trio

from imagen_actors.db.gateway import Gateway
from tests.fakes.supabase_storage import SERVICE_KEY, FakeSupabaseStorage, serve_fake_storage
from tests.support.jobs import assert_replay_matches, insert_job
from tests.support.worker import make_config, running_worker, wait_terminal

pytestmark = pytest.mark.db


async def count_events(gw: Gateway, kind: str) -> int:
    rows = await gw.fetch_sql("SELECT count(*) AS n FROM imagen.job_events WHERE type = $1", kind)
    return int(rows[0]["n"])


async def test_an_upload_slower_than_the_lease_keeps_its_lease(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 7 s upload under a 5 s lease (Reaper every 0.5 s) completes on its first attempt."""
    async with serve_fake_storage(FakeSupabaseStorage(reply_delay_s=7.0)) as fake:
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
        storage = {"type": "supabase", "timeout_s": 30.0}
        cfg = make_config(tmp_path, database_url, lease_s=5, storage=storage)
        async with running_worker(cfg) as (_handle, gw):
            job = await insert_job(gw, "a slow link")
            row = await wait_terminal(gw, job, timeout=15)
            assert (row["status"], row["attempts"]) == ("done", 1)
            types = [type(e).__name__ for e in await gw.load_events(job)]
            assert "JobRequeued" not in types
            assert types.count("LeaseExtended") >= 3  # one with the result, then every ~1.7 s
            await assert_replay_matches(gw, job)


async def test_abort_gives_back_images_waiting_for_the_uploader(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Abort with two jobs uploading (one Uploader per slot plus one) and the third one's
    image being handed over (a rendezvous, so no fourth is claimed): all go back to pending
    at once, attempts refunded, none left running."""
    async with serve_fake_storage(FakeSupabaseStorage(reply_delay_s=30.0)) as fake:
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
        storage = {"type": "supabase", "timeout_s": 60.0}
        cfg = make_config(tmp_path, database_url, lease_s=60, storage=storage)
        async with running_worker(cfg) as (handle, gw):
            jobs: list[uuid.UUID] = [await insert_job(gw, f"queued image {i}") for i in range(3)]
            with trio.fail_after(20):
                while await count_events(gw, "GenerationSucceeded") < 2:
                    await trio.sleep(0.02)
            handle.abort()
            with trio.fail_after(10):
                await handle.pipeline_done.wait()
            rows = [await gw.fetchrow("load_job", j) for j in jobs]
            assert [(r["status"], r["attempts"]) for r in rows if r] == [("pending", 0)] * 3
            for j in jobs:
                await assert_replay_matches(gw, j)
