from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from imagen_actors.core.errors import ConstraintViolationError, DatabaseError, MigrationError
from imagen_actors.db.gateway import Gateway
from imagen_actors.db.migrations import discover, migrate
from tests.support.jobs import OWNER, assert_replay_matches
from tests.support.pg import Cluster

pytestmark = pytest.mark.db


@pytest.fixture
def empty_url(pg_cluster: Cluster) -> Iterator[str]:
    name, dsn = pg_cluster.empty_database()
    yield dsn
    pg_cluster.drop(name)


async def test_migrations_apply_once_then_no_op(empty_url: str) -> None:
    """On an empty DB every file applies; a second run applies nothing."""
    async with Gateway.open(empty_url) as gw:
        first = await migrate(gw)
        assert first == [m.name for m in discover()]
        assert await migrate(gw) == []
        rows = await gw.fetch("applied_migrations")
        assert [r["name"] for r in rows] == first


async def test_changed_applied_migration_is_refused(empty_url: str, tmp_path: Path) -> None:
    """Editing an applied file stops the runner with a message naming the file."""
    folder = tmp_path / "schema"
    folder.mkdir()
    for m in discover():
        (folder / m.name).write_text(m.sql)
    async with Gateway.open(empty_url) as gw:
        await migrate(gw, folder)
        edited = folder / "0002_jobs_and_events.sql"
        edited.write_text(edited.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationError, match=r"0002_jobs_and_events\.sql was changed"):
            await migrate(gw, folder)


async def test_concurrent_migrators_do_not_race(empty_url: str) -> None:
    """Two processes' worth of migrate() at once: the advisory lock serializes them."""
    results: list[list[str]] = []
    async with Gateway.open(empty_url) as a, Gateway.open(empty_url) as b:
        async with trio.open_nursery() as nursery:

            async def run(gw: Gateway) -> None:
                results.append(await migrate(gw))

            nursery.start_soon(run, a)
            nursery.start_soon(run, b)
    assert sorted(len(r) for r in results) == [0, len(discover())]


async def test_smoke_insert_gives_pending_v1_one_event_and_notify(gateway: Gateway) -> None:
    """The seed's INSERT: pending, version 1, one JobSubmitted, NOTIFY carrying the id."""
    async with gateway.listen("imagen_jobs") as notes:
        await gateway.execute_sql(
            "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
            "VALUES ($1, 'a lighthouse at dusk', 'mock', 512, 512)",
            OWNER,
        )
        with trio.fail_after(5):
            await notes.next()
    assert notes.last_payload is not None
    job_id = uuid.UUID(notes.last_payload)
    row = await gateway.fetchrow("load_job", job_id)
    assert row is not None
    assert (row["status"], row["version"], row["attempts"]) == ("pending", 1, 0)
    events = await gateway.load_events(job_id)
    assert [type(e).__name__ for e in events] == ["JobSubmitted"]
    await assert_replay_matches(gateway, job_id)


@pytest.mark.parametrize(
    ("column_sql", "constraint"),
    [
        ("width => 0", "jobs_width_between_64_and_4096"),
        ("width => 4097", "jobs_width_between_64_and_4096"),
        ("height => -5", "jobs_height_between_64_and_4096"),
        ("prompt => ''", "jobs_prompt_not_blank"),
        ("prompt => '   '", "jobs_prompt_not_blank"),
        ("prompt => repeat('x', 4001)", "jobs_prompt_max_4000_chars"),
        ("prompt => 'bell' || chr(7)", "jobs_prompt_no_control_chars"),
        ("seed => -1", "jobs_seed_non_negative"),
        ("backend => 'Flux Dev!'", "jobs_backend_is_identifier"),
        ("opts => '[1,2]'::jsonb", "jobs_opts_is_object"),
        ("status => 'exploded'", "jobs_status_known"),
        ("status => 'running'", "jobs_insert_pending_only"),
    ],
)
async def test_checks_reject_nonsense_by_name(
    gateway: Gateway, column_sql: str, constraint: str
) -> None:
    """Each bad value is refused by a constraint whose name says what is wrong."""
    values = {
        "owner_user_id": f"'{OWNER}'",
        "prompt": "'owl'",
        "backend": "'mock'",
        "width": "64",
        "height": "64",
    }
    col, expr = column_sql.split(" => ", 1)
    values[col] = expr
    sql = f"INSERT INTO imagen.jobs ({', '.join(values)}) VALUES ({', '.join(values.values())})"
    with pytest.raises(ConstraintViolationError) as info:
        await gateway.execute_sql(sql)
    assert info.value.constraint == constraint


async def test_nul_byte_prompt_is_refused(gateway: Gateway) -> None:
    """Postgres text cannot hold NUL; the error is ours, not a crash."""
    with pytest.raises(DatabaseError):
        await gateway.execute_sql(
            "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height) "
            "VALUES ($1, $2, 'mock', 64, 64)",
            OWNER,
            "nul\x00byte",
        )
