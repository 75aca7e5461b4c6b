"""The log proves itself: each event's hash chains to the one before (schema/0009), and
`replay --verify` checks seq, chain and projection, reporting per job and going on."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
import trio

from imagen_actors.cli.commands import replay as replay_cmd
from imagen_actors.config.bundled import schema_dir
from imagen_actors.config.settings import SupabaseStorageConfig
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.migrations import migrate
from imagen_actors.storage.registry import build_store
from imagen_actors.storage.supabase import build
from tests.fakes.supabase_storage import SERVICE_KEY, serve_fake_storage
from tests.support.cli import run_cli
from tests.support.jobs import insert_job
from tests.support.pg import Cluster, admin
from tests.support.worker import make_config, running_worker, wait_all_terminal

pytestmark = pytest.mark.db

UNLOCK = "ALTER TABLE imagen.job_events DISABLE TRIGGER job_events_no_update_delete"
RELOCK = "ALTER TABLE imagen.job_events ENABLE TRIGGER job_events_no_update_delete"


async def _as_superuser(dsn: str, *statements: str) -> None:
    """Tamper the way only a superuser can: with the log's immutability trigger off."""
    await trio.to_thread.run_sync(
        admin, dsn, "; ".join(("BEGIN", UNLOCK, *statements, RELOCK, "COMMIT"))
    )


async def _done_and_failed(database_url: str, tmp_path: Path) -> tuple[uuid.UUID, uuid.UUID]:
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        done = await insert_job(gw, "a lighthouse at dusk")
        failed = await insert_job(gw, "[fail:permanent] owl")
        await wait_all_terminal(gw)
        with trio.fail_after(10):  # the usage event lands after the job is done
            while not await gw.fetch_sql(
                "SELECT 1 FROM imagen.job_events WHERE job_id = $1 AND type = 'UsageRecorded'",
                done,
            ):
                await trio.sleep(0.05)
    return done, failed


async def test_worker_events_chain_and_tampering_is_reported(
    database_url: str, tmp_path: Path
) -> None:
    done, failed = await _done_and_failed(database_url, tmp_path)
    async with Gateway.open(database_url, application_name="test") as gw:
        assert (await replay_cmd.verify_one(gw, done)).ok
        assert (await replay_cmd.verify_one(gw, failed)).ok
        links = await gw.fetch_sql(
            "SELECT count(*) FILTER (WHERE octet_length(hash) = 32) AS n, count(*) AS total "
            "FROM imagen.job_events"
        )
        assert links[0]["n"] == links[0]["total"] > 8

        # A middle event deleted and the projection's version patched to match.
        await _as_superuser(
            database_url,
            f"DELETE FROM imagen.job_events WHERE job_id = '{failed}' AND seq = 3",
            f"UPDATE imagen.jobs SET version = version - 1 WHERE id = '{failed}'",
        )
        gone = await replay_cmd.verify_one(gw, failed)
        assert not gone.ok
        assert any("seq jumps from 2 to 4" in p for p in gone.problems), gone
        assert any(p.startswith("event 4 (") and "does not chain" in p for p in gone.problems)

        # ImageStored's sha256 and path rewritten together with the images row.
        await _as_superuser(
            database_url,
            "UPDATE imagen.job_events SET data = data || "
            '\'{"sha256": "' + "ab" * 32 + '", "storage_path": "elsewhere.png"}\'::jsonb '
            f"WHERE job_id = '{done}' AND type = 'ImageStored'",
            "UPDATE imagen.images SET sha256 = '" + "ab" * 32 + "', storage_path = 'elsewhere.png' "
            f"WHERE job_id = '{done}'",
        )
        rewritten = await replay_cmd.verify_one(gw, done)
        assert not rewritten.ok and not rewritten.diffs  # the projection alone cannot tell
        assert [p for p in rewritten.problems if "ImageStored" in p], rewritten.problems

        # A job nobody touched, and an event of an unknown type from service_role.
        other = await insert_job(gw, "an untouched owl")
        stray = await insert_job(gw, "a stray owl")
        await gw.execute_sql(
            "BEGIN; SET LOCAL ROLE service_role; "
            "INSERT INTO imagen.job_events (job_id, seq, type, data, actor) "
            f"VALUES ('{stray}', 2, 'JobTeleported', '{{}}', 'someone'); COMMIT"
        )
        summary = await replay_cmd.verify_all(gw)
    assert (summary.checked, summary.ok, summary.mismatched) == (4, 1, 3)
    by_job = {r.job_id: r for r in summary.results}  # the jobs that did not verify
    assert other not in by_job
    assert any("JobTeleported" in p and "undecodable" in p for p in by_job[stray].problems)


async def test_objects_are_checked_against_their_sha256(database_url: str, tmp_path: Path) -> None:
    """--objects reads each done job's object back: a changed, missing or moved object is
    reported; jobs without an image are not checked."""
    done, failed = await _done_and_failed(database_url, tmp_path)
    cfg = make_config(tmp_path, database_url)
    config_file = str(tmp_path / "imagen-t1.yaml")
    store = build_store(cfg.storage)
    async with Gateway.open(database_url, application_name="test") as gw:
        image = (await gw.fetch("replay_images_for", [done]))[0]
        fine = await replay_cmd.check_objects(
            gw, store, [await replay_cmd.verify_one(gw, j) for j in (done, failed)]
        )
        assert [r.ok for r in fine] == [True, True]
        out = await run_cli(database_url, "replay", str(done), "--verify", "--config", config_file,
                         "--objects")  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr

        path = tmp_path / "objects" / image["bucket"] / image["storage_path"]
        path.write_bytes(path.read_bytes() + b"tampered")
        (changed,) = await replay_cmd.check_objects(gw, store, [fine[0]])
        assert not changed.ok and "has sha256" in changed.problems[-1], changed
        out = await run_cli(database_url, "replay", "--all", "--objects", "--config", config_file)
        assert out.returncode == 1 and b"the image row says" in out.stdout, out.stdout

        path.unlink()
        (missing,) = await replay_cmd.check_objects(gw, store, [fine[0]])
        assert "is missing from storage" in missing.problems[-1]


async def test_supabase_get_reads_an_object_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serve_fake_storage() as fake:
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
        store = build(SupabaseStorageConfig(max_attempts=2, timeout_s=5.0), backoff_base_s=0.01)
        try:
            await store.put("2026-12-01/owl-1.png", b"\x89PNG owl", "image/png")
            assert await store.get("2026-12-01/owl-1.png") == b"\x89PNG owl"
            # A missing object: the real server answers 400 NoSuchKey, then get() asks the
            # lookup routes (exists); tests/fakes still drops that connection (issue 15.5).
        finally:
            await store.aclose()


async def test_existing_events_are_chained_by_the_migration(
    pg_cluster: Cluster, tmp_path: Path
) -> None:
    """Rows written before 0009 get their links in seq order; new ones continue the chain."""
    before_chain = tmp_path / "schema"
    before_chain.mkdir()
    for path in sorted(schema_dir().glob("*.sql")):
        if path.name < "0009":
            shutil.copy(path, before_chain / path.name)
    name, dsn = await trio.to_thread.run_sync(pg_cluster.empty_database)
    try:
        async with Gateway.open(dsn, application_name="test") as gw:
            await migrate(gw, before_chain)
            old = await insert_job(gw, "an owl from before the chain")
            await gw.execute_sql(
                "INSERT INTO imagen.job_events (job_id, seq, type, data, actor) VALUES "
                f"('{old}', 2, 'JobCancelRequested', '{{\"reason\": \"r\"}}', 'cli')"
            )
            await gw.execute_sql(
                "UPDATE imagen.jobs j SET version = 2, updated_at = e.occurred_at "
                f"FROM imagen.job_events e WHERE j.id = '{old}' AND e.job_id = j.id "
                "AND e.seq = 2"
            )
            applied = await migrate(gw)
            assert applied[0] == "0009_door_limits_and_event_chain.sql"
            assert (await replay_cmd.verify_one(gw, old)).ok
            new = await insert_job(gw, "an owl after the chain")
            assert (await replay_cmd.verify_one(gw, new)).ok
        async with running_worker(make_config(tmp_path, dsn)) as (_h, gw):
            await wait_all_terminal(gw)
            for job in (old, new):
                result = await replay_cmd.verify_one(gw, job)
                assert result.ok, result
    finally:
        await trio.to_thread.run_sync(pg_cluster.drop, name)
