"""imagen.cancel_job / imagen.retry_job as the owner UI calls them, and what they leave in
the stream: events, an exact projection, and a notification per status change."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import asyncpg
import pytest
import trio

from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.db.gateway import Gateway
from tests.cli.test_cli import cli
from tests.support.jobs import OTHER_OWNER, OWNER, assert_replay_matches, insert_job
from tests.support.roles import run_as
from tests.support.worker import make_config, running_worker, wait_terminal

pytestmark = pytest.mark.db


def cancel_as(dsn: str, user: uuid.UUID | None, role: str, job: uuid.UUID) -> str:
    rows = run_as(dsn, user, role, "SELECT imagen.cancel_job($1, 'changed my mind') AS s", job)
    return str(rows[0]["s"])


async def test_the_owner_cancels_a_pending_job_and_it_is_never_claimed(
    gateway: Gateway, database_url: str
) -> None:
    """authenticated cancels its own pending job: cancelled at once with the reason, two
    events, a projection replay reproduces; a claim then finds nothing."""
    job = await insert_job(gateway)
    status = await trio.to_thread.run_sync(cancel_as, database_url, OWNER, "authenticated", job)
    assert status == "cancelled"
    row = await gateway.fetchrow("load_job", job)
    assert row is not None and (row["status"], row["error"]) == ("cancelled", "changed my mind")
    types = [type(e).__name__ for e in await gateway.load_events(job)]
    assert types == ["JobSubmitted", "JobCancelRequested", "JobCancelled"]
    await assert_replay_matches(gateway, job)
    assert await gateway.claim(dc.claim("w", 60)) is None
    # Cancelling it again is a no-op that says so (a NOTICE) and changes nothing.
    assert await gateway.cancel_job(job, None) == "cancelled"
    assert len(await gateway.load_events(job)) == 3


async def test_another_owner_and_anon_cannot_cancel(gateway: Gateway, database_url: str) -> None:
    """Someone else's job reads as no job at all; anon may not call the function."""
    job = await insert_job(gateway)
    with pytest.raises(asyncpg.NoDataFoundError, match="no job"):
        await trio.to_thread.run_sync(cancel_as, database_url, OTHER_OWNER, "authenticated", job)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await trio.to_thread.run_sync(cancel_as, database_url, None, "anon", job)
    assert (await gateway.fetchrow("load_job", job) or {})["status"] == "pending"


async def test_a_running_job_gets_cancel_requested_and_a_control_notification(
    gateway: Gateway, database_url: str
) -> None:
    """For a running job the function records the request and NOTIFYs imagen_job_control for
    the worker holding it; the job stays running until that worker stops it."""
    job = await insert_job(gateway)
    assert await gateway.claim(dc.claim("w", 60)) is not None
    async with gateway.listen("imagen_job_control") as notes:
        assert await gateway.cancel_job(job, "too slow") == "running"
        with trio.fail_after(10):
            await notes.next()
    assert json.loads(notes.last_payload or "{}") == {"job_id": str(job), "action": "cancel"}
    events = await gateway.load_events(job)
    assert isinstance(events[-1], ev.JobCancelRequested) and events[-1].reason == "too slow"
    await assert_replay_matches(gateway, job)


async def test_retry_puts_a_failed_job_back_with_a_fresh_budget_in_the_same_stream(
    gateway: Gateway, database_url: str
) -> None:
    """A failed job retried by its owner is pending with attempts 0 and no error; claimed
    again it is attempt 1; its whole history is one stream; a pending job cannot be retried."""
    job = await insert_job(gateway, max_attempts=1)
    claimed = await gateway.claim(dc.claim("w", 60))
    assert claimed is not None
    await gateway.transition(job, dc.failure("w", "bad prompt", "permanent", "executor", attempt=1))
    status = await trio.to_thread.run_sync(
        run_as, database_url, OWNER, "authenticated", "SELECT imagen.retry_job($1) AS s", job
    )
    assert status[0]["s"] == "pending"
    row = await gateway.fetchrow("load_job", job)
    assert row is not None
    assert (row["status"], row["attempts"], row["error"], row["finished_at"]) == (
        "pending",
        0,
        None,
        None,
    )
    await assert_replay_matches(gateway, job)
    again = await gateway.claim(dc.claim("w", 60))
    assert again is not None and again.state.attempts == 1
    types = [type(e).__name__ for e in await gateway.load_events(job)]
    assert types[-4:] == ["JobFailed", "JobRetried", "JobClaimed", "GenerationStarted"]
    with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="only a failed"):
        await trio.to_thread.run_sync(
            run_as, database_url, OWNER, "authenticated", "SELECT imagen.retry_job($1)", job
        )


async def test_every_status_change_is_announced_on_imagen_job_updates(
    gateway: Gateway,
) -> None:
    """INSERT, claim and cancel each NOTIFY imagen_job_updates with id, owner, status,
    version; the last one seen carries the final state."""
    async with gateway.listen("imagen_job_updates") as notes:
        job = await insert_job(gateway)
        with trio.fail_after(10):
            await notes.next()
        first = json.loads(notes.last_payload or "{}")
        assert (first["id"], first["status"], first["version"]) == (str(job), "pending", 1)
        assert first["owner_user_id"] == str(OWNER)
        await gateway.cancel_job(job, None)
        with trio.fail_after(10):
            await notes.next()
        last = json.loads(notes.last_payload or "{}")
    assert (last["status"], last["version"]) == ("cancelled", 3)


async def test_cli_cancel_and_retry(gateway: Gateway, database_url: str, tmp_path: Path) -> None:
    """`imagen-actors cancel` and `retry` call the same functions and say what happened."""
    job = await insert_job(gateway)
    env = {"IMAGEN_WORKER_DATABASE_URL": database_url}
    out = await trio.to_thread.run_sync(
        lambda: cli("cancel", str(job), "--reason", "nope", env=env)
    )
    assert out.returncode == 0 and out.stdout.strip() == "cancelled", out.stderr
    out = await trio.to_thread.run_sync(lambda: cli("cancel", str(job), env=env))
    assert out.returncode == 0 and "already cancelled: nothing to cancel" in out.stderr
    out = await trio.to_thread.run_sync(lambda: cli("retry", str(job), env=env))
    assert out.returncode == 0 and out.stdout.strip() == "pending", out.stderr
    out = await trio.to_thread.run_sync(lambda: cli("retry", str(job), env=env))
    assert out.returncode == 1 and "only a failed or cancelled job" in out.stderr
    out = await trio.to_thread.run_sync(lambda: cli("cancel", str(uuid.uuid4()), env=env))
    assert out.returncode == 2 and "no job" in out.stderr


async def test_a_retried_job_runs_to_done_on_a_worker(tmp_path: Path, database_url: str) -> None:
    """A job that failed for good (its one attempt used), retried, is run again by a worker
    and ends done with one image, attempt 1 of its new budget; replay reproduces the row."""
    async with Gateway.open(database_url) as gw:
        job = await insert_job(gw, "a patient owl", max_attempts=1)
        assert await gw.claim(dc.claim("gone:w", 60)) is not None
        await gw.transition(
            job, dc.failure("gone:w", "GPU fell off the bus", "permanent", "executor", attempt=1)
        )
        assert await gw.retry_job(job) == "pending"
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        row = await wait_terminal(gw, job)
        assert (row["status"], row["attempts"], row["error"]) == ("done", 1, None)
        images = await gw.fetch_sql("SELECT 1 FROM imagen.images WHERE job_id = $1", job)
        assert len(images) == 1
        await assert_replay_matches(gw, job)
