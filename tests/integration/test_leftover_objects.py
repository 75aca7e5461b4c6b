"""A job that fails after its object reached storage must not leave that object behind.

Found by the chaos kill -9 campaign: a job killed after its upload but before the completion
transaction, then killed again until its attempts ran out, ended ``failed`` with its object
still in the bucket (an orphan no image row points at). Here the same state is reached
deterministically: the store keeps every upload but the reply never arrives, so the only
attempt fails with a storage error while the object is there.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from imagen_actors.core import events as ev
from imagen_actors.core.decisions import MAX_OUTAGE_REFUNDS
from tests.fakes.supabase_storage import (
    SERVICE_KEY,
    FakeSupabaseStorage,
    Faults,
    serve_fake_storage,
)
from tests.support.jobs import assert_replay_matches, insert_job
from tests.support.worker import make_config, running_worker, wait_terminal

pytestmark = pytest.mark.db


async def test_failed_job_has_its_uploaded_object_discarded(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost_replies = Faults(1.0, random.Random(0), kinds=("lost",), methods=frozenset({"POST"}))
    async with serve_fake_storage(FakeSupabaseStorage(faults=lost_replies, hang_s=2)) as fake:
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
        storage = {"type": "supabase", "timeout_s": 0.3, "max_attempts": 1}
        cfg = make_config(tmp_path, database_url, storage=storage, probe_min_s=0.1, probe_max_s=0.2)
        async with running_worker(cfg) as (_handle, gw):
            job = await insert_job(gw, "a reply lost in transit", max_attempts=1)
            row = await wait_terminal(gw, job, timeout=30)
            assert row["status"] == "failed" and row["error"].startswith("storage: ")
            # A timed-out upload is a dependency fault: refunded MAX_OUTAGE_REFUNDS times
            # (the bucket's check passes meanwhile, the kept image re-uploaded onto the same
            # key), then it counts as the job's one attempt.
            assert f"after {MAX_OUTAGE_REFUNDS} refunded outages" in row["error"]
            assert lost_replies.injected["lost"] == MAX_OUTAGE_REFUNDS + 1
            with trio.fail_after(10):
                while fake.objects:
                    await trio.sleep(0.05)
                while not any(isinstance(e, ev.ImageDiscarded) for e in await gw.load_events(job)):
                    await trio.sleep(0.05)
            events = await gw.load_events(job)
            (discarded,) = [e for e in events if isinstance(e, ev.ImageDiscarded)]
            (upload,) = {r.target for r in fake.requests if r.method == "POST"}
            prefix = "/storage/v1/object/imagen-generated/"
            assert upload.removeprefix(prefix) in discarded.storage_paths
            await assert_replay_matches(gw, job)
