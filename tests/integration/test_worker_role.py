"""The worker runs as a least-privilege login role granted imagen_worker (issue 15 item 1).

The login is not a superuser, owns nothing, has no CREATE on the database and no BYPASSRLS:
what Supabase's `postgres` can make. It runs a real worker through a DSN naming it, against
the embedded cluster and (in .ci/run's second pass) the machine's PostgreSQL 15.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trio

from imagen_actors.config.settings import Config
from imagen_actors.core import events as ev
from imagen_actors.core.errors import MigrationError
from imagen_actors.db.database import open_database
from imagen_actors.db.gateway import Gateway
from imagen_actors.worker.identity import worker_id
from tests.fakes.supabase_storage import (
    SERVICE_KEY,
    FakeSupabaseStorage,
    Faults,
    serve_fake_storage,
)
from tests.support.jobs import OWNER, assert_replay_matches
from tests.support.pg import Cluster, admin, login_role
from tests.support.roles import run_as
from tests.support.worker import make_config, running_worker, wait_terminal

pytestmark = pytest.mark.db

INSERT = (
    "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height{cols}) "
    "VALUES ($1, $2, 'mock', 64, 64{vals}) RETURNING id"
)


def login(
    cluster: Cluster, database_url: str, member_of: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    with login_role(cluster.admin_dsn, database_url, member_of) as (dsn, password):
        monkeypatch.setenv("PGPASSWORD", password)
        yield dsn


@pytest.fixture
def worker_dsn(
    pg_cluster: Cluster, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    yield from login(pg_cluster, database_url, "imagen_worker", monkeypatch)


@pytest.fixture
def anon_dsn(
    pg_cluster: Cluster, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    yield from login(pg_cluster, database_url, "anon", monkeypatch)


def submit_as_owner(dsn: str, prompt: str, max_attempts: int | None = None) -> uuid.UUID:
    """INSERT as `authenticated` with the owner's JWT claims, as the owner UI does; with
    ``max_attempts`` (a column the UI may not set) as the database owner."""
    if max_attempts is None:
        sql = INSERT.format(cols="", vals="")
        (row,) = run_as(dsn, OWNER, "authenticated", sql, OWNER, prompt)
    else:
        sql = INSERT.format(cols=", max_attempts", vals=", $3")
        (row,) = run_as(dsn, None, None, sql, OWNER, prompt, max_attempts)
    job_id: uuid.UUID = row["id"]
    return job_id


def as_login(dsn: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(go())


async def open_refused(cfg: Config) -> str:
    """The MigrationError that opening the configured database raises, as text."""
    try:
        async with open_database(cfg):
            pass
    except BaseExceptionGroup as group:  # when raised from inside a nursery
        matched, _rest = group.split(MigrationError)
        assert matched is not None, group
        while isinstance(matched, BaseExceptionGroup):
            matched = matched.exceptions[0]
        return str(matched)
    except MigrationError as exc:
        return str(exc)
    raise AssertionError("the database was opened")


async def wait_for_event(gw: Gateway, job_id: uuid.UUID, kind: type[ev.Event]) -> None:
    with trio.fail_after(15):
        while not any(isinstance(e, kind) for e in await gw.load_events(job_id)):
            await trio.sleep(0.05)


def test_the_login_is_least_privilege(worker_dsn: str) -> None:
    """The role the test runs the worker as could be made by Supabase's `postgres`."""
    (me,) = as_login(
        worker_dsn,
        "SELECT r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb, "
        "has_database_privilege(current_database(), 'CREATE') AS can_create, "
        "pg_has_role('imagen_worker', 'USAGE') AS is_worker "
        "FROM pg_roles r WHERE r.rolname = current_user",
    )
    assert me == {
        "rolsuper": False,
        "rolbypassrls": False,
        "rolcreaterole": False,
        "rolcreatedb": False,
        "can_create": False,
        "is_worker": True,
    }


async def test_worker_as_login_role_completes_owner_jobs(
    worker_dsn: str, database_url: str, tmp_path: Path
) -> None:
    """Jobs submitted as `authenticated` end done: events, image row, usage row, key."""
    job = await trio.to_thread.run_sync(submit_as_owner, database_url, "an owl in a role")
    cfg = make_config(tmp_path, worker_dsn)
    async with running_worker(cfg) as (_h, gw):
        row = await wait_terminal(gw, job)
        assert row["status"] == "done", row["error"]
        await wait_for_event(gw, job, ev.UsageRecorded)
        await assert_replay_matches(gw, job)
    async with Gateway.open(database_url) as owner_gw:
        (image,) = await owner_gw.fetch_sql(
            "SELECT owner_user_id, bucket, storage_path FROM imagen.images WHERE job_id = $1", job
        )
        assert image["owner_user_id"] == OWNER
        keys = await owner_gw.fetch_sql(
            "SELECT storage_path FROM imagen.storage_keys WHERE job_id = $1", job
        )
        assert keys == [{"storage_path": image["storage_path"]}]
        usage = await owner_gw.fetch_sql(
            "SELECT caller FROM mai.imagen_usage WHERE job_id = $1", job
        )
        assert len(usage) == 1
        (seen,) = await owner_gw.fetch_sql("SELECT worker_id FROM imagen.workers")
        assert seen["worker_id"] == worker_id(cfg)
    obj = tmp_path / "objects" / image["bucket"] / image["storage_path"]
    assert obj.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_reaper_requeues_and_fails_expired_leases_as_login_role(
    worker_dsn: str, database_url: str, tmp_path: Path
) -> None:
    """A ghost's expired lease is requeued (then done); one out of attempts is failed."""
    requeued = await trio.to_thread.run_sync(submit_as_owner, database_url, "a requeued owl")
    exhausted = await trio.to_thread.run_sync(submit_as_owner, database_url, "a spent owl", 1)
    past = datetime.now(UTC) - timedelta(minutes=5)
    async with Gateway.open(database_url) as owner_gw:
        for job in (requeued, exhausted):
            claimed = ev.JobClaimed(
                job_id=job,
                occurred_at=past,
                actor="claimer",
                worker_id="ghost",
                attempt=1,
                lease_expires_at=past + timedelta(seconds=30),
            )
            await owner_gw.transition(job, lambda _s, _n, e=claimed: [e])
    async with running_worker(make_config(tmp_path, worker_dsn)) as (_h, gw):
        done = await wait_terminal(gw, requeued)
        failed = await wait_terminal(gw, exhausted)
        assert (done["status"], done["attempts"]) == ("done", 2)
        assert failed["status"] == "failed"
        kinds = [type(e).__name__ for e in await gw.load_events(requeued)]
        assert "JobRequeued" in kinds
        await assert_replay_matches(gw, exhausted)


async def test_janitor_discards_a_failed_jobs_object_as_login_role(
    worker_dsn: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object a failed job left in storage is deleted and its key tombstoned."""
    lost_replies = Faults(1.0, random.Random(0), kinds=("lost",), methods=frozenset({"POST"}))
    async with serve_fake_storage(FakeSupabaseStorage(faults=lost_replies, hang_s=2)) as fake:
        monkeypatch.setenv("SUPABASE_URL", fake.url)
        monkeypatch.setenv("SUPABASE_SERVICE_KEY", SERVICE_KEY)
        storage = {"type": "supabase", "timeout_s": 0.3, "max_attempts": 1}
        job = await trio.to_thread.run_sync(submit_as_owner, database_url, "a lost reply", 1)
        async with running_worker(make_config(tmp_path, worker_dsn, storage=storage)) as (_h, gw):
            row = await wait_terminal(gw, job)
            assert row["status"] == "failed" and row["error"].startswith("storage: ")
            await wait_for_event(gw, job, ev.ImageDiscarded)
            assert not fake.objects
            # The janitor tombstones the key right after ImageDiscarded commits (its own
            # statement), so wait for it rather than race it.
            with trio.fail_after(10):
                while True:
                    (key,) = await gw.fetch_sql(
                        "SELECT discarded_at FROM imagen.storage_keys WHERE job_id = $1", job
                    )
                    if key["discarded_at"] is not None:
                        break
                    await trio.sleep(0.05)


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("DELETE FROM imagen.job_events", "job_events"),
        ("UPDATE imagen.job_events SET actor = 'x'", "job_events"),
        ("UPDATE imagen.jobs SET prompt = 'rewritten'", "jobs"),
        ("UPDATE imagen.jobs SET owner_user_id = gen_random_uuid()", "jobs"),
        ("DELETE FROM imagen.jobs", "jobs"),
        ("DELETE FROM imagen.images", "images"),
        ("UPDATE imagen.images SET storage_path = 'x'", "images"),
        ("DELETE FROM imagen.storage_keys", "storage_keys"),
        ("DELETE FROM mai.imagen_usage", "imagen_usage"),
        ("INSERT INTO imagen.schema_migrations (name, checksum) VALUES ('x', 'y')", "schema"),
        ("SELECT id FROM auth.users", "auth"),
        ("CREATE TABLE imagen.mine (id int)", "imagen"),
        ("CREATE SCHEMA mine", "database"),
    ],
)
def test_the_worker_role_cannot(worker_dsn: str, database_url: str, sql: str, what: str) -> None:
    """Refused by privilege (42501), not by a trigger or an empty table."""
    submit_as_owner(database_url, "a guarded owl")
    # A Supabase-shaped auth.users, which the worker must not read.
    admin(database_url, "CREATE TABLE IF NOT EXISTS auth.users (id uuid PRIMARY KEY)")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied") as err:
        as_login(worker_dsn, sql)
    assert what in str(err.value)


def test_the_worker_role_reads_no_auth_function(worker_dsn: str) -> None:
    """auth.* is the API roles' business: the worker has no USAGE on the schema."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="schema auth"):
        as_login(worker_dsn, "SELECT auth.uid()")


async def test_worker_start_refuses_a_database_behind(
    worker_dsn: str, database_url: str, tmp_path: Path
) -> None:
    """A missing migration stops the start with the command that fixes it; nothing created."""
    gone = "DELETE FROM imagen.schema_migrations WHERE name = '0011_worker_role.sql'"
    await trio.to_thread.run_sync(admin, database_url, gone)
    error = await open_refused(make_config(tmp_path, worker_dsn))
    assert re.search(
        r"1 migration\(s\) behind.*0011_worker_role\.sql.*imagen-actors migrate", error
    )


async def test_worker_start_refuses_an_empty_database(pg_cluster: Cluster, tmp_path: Path) -> None:
    """No imagen schema at all: the error names `imagen-actors migrate`, and nothing is
    created (the configured DSN is not auto-migrated, even as a superuser)."""
    name, dsn = await trio.to_thread.run_sync(pg_cluster.empty_database)
    try:
        error = await open_refused(make_config(tmp_path, dsn))
        assert re.search("no imagen schema yet.*imagen-actors migrate", error)
        async with Gateway.open(dsn) as gw:
            rows = await gw.fetch_sql("SELECT 1 FROM pg_namespace WHERE nspname = 'imagen'")
            assert rows == []
    finally:
        await trio.to_thread.run_sync(pg_cluster.drop, name)


async def test_a_role_outside_imagen_worker_is_told_what_to_grant(
    anon_dsn: str, tmp_path: Path
) -> None:
    """A login that is not granted imagen_worker hears which GRANT it lacks."""
    error = await open_refused(make_config(tmp_path, anon_dsn))
    assert "GRANT imagen_worker TO imagen_t_login_" in error
