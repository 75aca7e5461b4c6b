from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.support.jobs import OTHER_OWNER, OWNER
from tests.support.roles import run_as

pytestmark = pytest.mark.db

INSERT = (
    "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height{cols}) "
    "VALUES ($1, 'owl', 'mock', 64, 64{vals}) RETURNING id"
)


@pytest.fixture
def seeded(database_url: str) -> dict[str, uuid.UUID]:
    a = run_as(database_url, None, None, INSERT.format(cols="", vals=""), OWNER)[0]["id"]
    b = run_as(database_url, None, None, INSERT.format(cols="", vals=""), OTHER_OWNER)[0]["id"]
    run_as(
        database_url,
        None,
        None,
        "INSERT INTO imagen.images (owner_user_id, job_id, prompt, backend, width, height, "
        "bucket, storage_path, bytes, sha256) VALUES ($1, $2, 'owl', 'mock', 64, 64, "
        "'imagen-generated', 'k.png', 1, repeat('a', 64))",
        OWNER,
        a,
    )
    return {"a": a, "b": b}


def count(dsn: str, user: uuid.UUID | None, role: str, table: str) -> int:
    return int(run_as(dsn, user, role, f"SELECT count(*) AS n FROM {table}")[0]["n"])


def test_owner_sees_only_own_jobs_images_and_events(
    database_url: str, seeded: dict[str, uuid.UUID]
) -> None:
    """Owner A sees one job, one event and one image; B sees its own job and no image."""
    assert count(database_url, OWNER, "authenticated", "imagen.jobs") == 1
    assert count(database_url, OWNER, "authenticated", "imagen.job_events") == 1
    assert count(database_url, OWNER, "authenticated", "imagen.images") == 1
    assert count(database_url, OTHER_OWNER, "authenticated", "imagen.images") == 0
    rows = run_as(database_url, OWNER, "authenticated", "SELECT id FROM imagen.jobs")
    assert rows == [{"id": seeded["a"]}]
    assert count(database_url, None, "service_role", "imagen.jobs") == 2


@pytest.mark.parametrize(
    "table", ["imagen.jobs", "imagen.images", "imagen.job_events", "mai.imagen_usage"]
)
def test_anon_sees_nothing(database_url: str, seeded: dict[str, uuid.UUID], table: str) -> None:
    """anon has no grant on any table."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        count(database_url, None, "anon", table)


def test_owner_inserts_pending_job_for_self(database_url: str) -> None:
    """A pending job for oneself goes in, with seq-1 event written by the trigger."""
    (row,) = run_as(database_url, OWNER, "authenticated", INSERT.format(cols="", vals=""), OWNER)
    events = run_as(
        database_url, None, None, "SELECT type FROM imagen.job_events WHERE job_id = $1", row["id"]
    )
    assert events == [{"type": "JobSubmitted"}]


@pytest.mark.parametrize(
    ("cols", "vals", "owner", "error"),
    [
        ("", "", OTHER_OWNER, asyncpg.InsufficientPrivilegeError),  # RLS WITH CHECK
        (", status", ", 'running'", OWNER, asyncpg.InsufficientPrivilegeError),
        (", status", ", 'done'", OWNER, asyncpg.InsufficientPrivilegeError),
        (", worker_id", ", 'evil'", OWNER, asyncpg.InsufficientPrivilegeError),
        (", attempts", ", 0", OWNER, asyncpg.InsufficientPrivilegeError),
    ],
)
def test_owner_cannot_insert_for_others_or_worker_columns(
    database_url: str, cols: str, vals: str, owner: uuid.UUID, error: type[Exception]
) -> None:
    """Inserting for another owner, or naming status/worker columns, is refused."""
    with pytest.raises(error):
        run_as(database_url, OWNER, "authenticated", INSERT.format(cols=cols, vals=vals), owner)
    assert count(database_url, None, "service_role", "imagen.jobs") == 0


def test_owner_cannot_update_or_delete_jobs(
    database_url: str, seeded: dict[str, uuid.UUID]
) -> None:
    """authenticated has no UPDATE/DELETE: status stays the worker's."""
    for sql in ("UPDATE imagen.jobs SET status = 'done'", "DELETE FROM imagen.jobs"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            run_as(database_url, OWNER, "authenticated", sql)


def test_anon_cannot_insert(database_url: str) -> None:
    """anon inserts nothing."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        run_as(database_url, None, "anon", INSERT.format(cols="", vals=""), OWNER)


@pytest.mark.parametrize("role", [None, "service_role", "authenticated"])
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE imagen.job_events SET type = 'X'",
        "DELETE FROM imagen.job_events",
        "TRUNCATE imagen.job_events CASCADE",
    ],
)
def test_job_events_are_append_only(
    database_url: str, seeded: dict[str, uuid.UUID], role: str | None, statement: str
) -> None:
    """UPDATE, DELETE and TRUNCATE fail for the table owner, service_role and authenticated."""
    with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.RaiseError)):
        run_as(database_url, OWNER if role == "authenticated" else None, role, statement)
    assert count(database_url, None, "service_role", "imagen.job_events") == 2
