"""A worker frozen (SIGSTOP) mid-upload past its lease, whose job another worker's Reaper then
fails and cleans, while a second job with the same prompt, seed and day runs: when the frozen
worker wakes, its write lands on its own job's key only (a tombstone nobody else may take), its
completion is refused, and the janitor removes what it wrote. The other job keeps its picture."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from imagen_actors.db.gateway import Gateway
from tests.chaos.campaign import Worker, context, wait_settled
from tests.chaos.invariants import check_invariants, describe
from tests.fakes.supabase_storage import SERVICE_KEY, FakeSupabaseStorage, serve_fake_storage
from tests.support.jobs import insert_job
from tests.support.worker import make_config

pytestmark = pytest.mark.chaos

LEASE_S = 5.0
ZOMBIE, OTHER = "chaos:zombie", "chaos:other"


async def test_a_frozen_worker_cannot_overwrite_another_jobs_image(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context("frozen-worker")
    fake = FakeSupabaseStorage()
    frozen, release = trio.Event(), trio.Event()
    zombie: list[Worker] = []

    async def freeze_first_upload(method: str, key: str) -> None:
        if frozen.is_set() or not key.endswith("/frozen-fox-7.png"):
            return
        os.kill(zombie[0].proc.pid, signal.SIGSTOP)  # mid-upload: the request is in flight
        frozen.set()
        await release.wait()  # ... and its write lands only after everything below

    fake.on_upload = freeze_first_upload
    async with serve_fake_storage(fake), Gateway.open(database_url) as gw:
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
        for name in ("zombie", "other"):
            make_config(
                tmp_path,
                database_url,
                name=name,
                lease_s=LEASE_S,
                max_attempts=1,
                storage={"type": "supabase", "timeout_s": 60.0},
            )
        zombie.append(Worker.spawn(tmp_path / "imagen-zombie.yaml", ZOMBIE))
        first = await insert_job(gw, "frozen fox", seed=7, max_attempts=1)
        with trio.fail_after(30):
            await frozen.wait()

        other = Worker.spawn(tmp_path / "imagen-other.yaml", OTHER)
        try:
            await other.wait_listening()
            # Its Reaper fails the frozen job once the lease ran out, and the janitor
            # discards its key; the same prompt, seed and day then runs on the other worker.
            with trio.fail_after(30):
                while not await gw.fetch_sql(
                    "SELECT 1 FROM imagen.job_events WHERE job_id = $1 AND type = 'ImageDiscarded'",
                    first,
                ):
                    await trio.sleep(0.05)
            second = await insert_job(gw, "frozen fox", seed=7, max_attempts=1)
            with trio.fail_after(30):
                while (await gw.fetchrow("load_job", second) or {}).get("status") != "done":
                    await trio.sleep(0.05)

            def zombie_object() -> bool:
                return any(key.endswith("/frozen-fox-7.png") for _b, key in fake.objects)

            release.set()  # the zombie's upload is stored now, onto its own (tombstoned) key
            os.kill(zombie[0].proc.pid, signal.SIGCONT)
            with trio.fail_after(30):
                while not zombie_object():
                    await trio.sleep(0.05)
            # The other worker's janitor re-checks tombstones every 60 reap intervals (30 s).
            with trio.fail_after(60):
                while zombie_object():
                    await trio.sleep(0.2)
            await wait_settled(gw, 30, ctx)
        finally:
            status = [await other.stop(), await zombie[0].stop()]
        assert status == [0, 0], f"{ctx}: {status}\n{other.log_tail()}\n{zombie[0].log_tail()}"

        rows = {r["id"]: r for r in await gw.fetch_sql("SELECT id, status, error FROM imagen.jobs")}
        assert rows[first]["status"] == "failed" and "lease expired" in rows[first]["error"]
        assert rows[second]["status"] == "done"
        objects = {key: blob.data for (_b, key), blob in fake.objects.items()}
        summary = await check_invariants(gw, database_url, objects, jobs=2, context=ctx)
        print(f"{ctx}\n{describe(summary)}")
        assert fake.violations == [], ctx
