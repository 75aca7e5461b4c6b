"""No single job can stop the queue: a job whose events the worker cannot read is failed
with its reason, the claims go on, and `replay --verify --all` reports it and goes on.

The poison rows are written past the door, as the superuser the tests connect as: the
request-validation trigger is disabled for the INSERT (the door refuses them, see
tests/badinput/test_sql_limits.py), or an event is appended by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagen_actors.cli.commands import replay as replay_cmd
from imagen_actors.db.gateway import Gateway
from tests.support.cli import run_cli
from tests.support.jobs import OTHER_OWNER, OWNER, insert_job
from tests.support.worker import make_config, running_worker, wait_all_terminal

pytestmark = pytest.mark.db

DEEP_OPTS = "(repeat('{\"a\":', 1000) || '1' || repeat('}', 1000))::jsonb"
# 310 digits and a fraction: a float beyond the decoder's 64-bit double.
HUGE_NUMBER_OPTS = "('{\"guidance\": ' || repeat('9', 310) || '.5}')::jsonb"


async def insert_past_the_door(gw: Gateway, prompt: str, opts_sql: str) -> None:
    """As the superuser, with the door's trigger off for this one INSERT."""
    await gw.execute_sql(
        "BEGIN; ALTER TABLE imagen.jobs DISABLE TRIGGER jobs_insert_validate; "
        "INSERT INTO imagen.jobs (owner_user_id, prompt, backend, width, height, opts) "
        f"VALUES ('{OWNER}', '{prompt}', 'mock', 64, 64, {opts_sql}); "
        "ALTER TABLE imagen.jobs ENABLE TRIGGER jobs_insert_validate; COMMIT"
    )


async def _jobs(gw: Gateway) -> list[dict[str, Any]]:
    return await gw.fetch_sql(
        "SELECT id, prompt, status, error, opts::text IS NOT NULL AS has_opts "
        "FROM imagen.jobs ORDER BY created_at, id"
    )


async def test_poison_jobs_are_failed_and_the_queue_goes_on(
    database_url: str, tmp_path: Path
) -> None:
    async with Gateway.open(database_url, application_name="test") as gw:
        await insert_past_the_door(gw, "deep owl", DEEP_OPTS)
        await insert_past_the_door(gw, "huge owl", HUGE_NUMBER_OPTS)
        # A pending job with an event of a type no worker knows (service_role may INSERT it).
        unknown = await insert_job(gw, "teleported owl")
        good = [
            await insert_job(gw, f"owl number {n}", owner=OTHER_OWNER if n % 2 else OWNER)
            for n in range(4)
        ]
        await gw.execute_sql(
            "BEGIN; SET LOCAL ROLE service_role; "
            "INSERT INTO imagen.job_events (job_id, seq, type, data, actor) "
            f"VALUES ('{unknown}', 2, 'JobTeleported', '{{}}', 'someone'); COMMIT"
        )

    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        await wait_all_terminal(gw, timeout=30)
        rows = await _jobs(gw)
        failed_events = await gw.fetch_sql(
            "SELECT job_id, data ->> 'error_class' AS error_class, data ->> 'error' AS error "
            "FROM imagen.job_events WHERE type = 'JobFailed'"
        )

    by_prompt = {r["prompt"]: r for r in rows}
    assert {by_prompt[f"owl number {n}"]["status"] for n in range(4)} == {"done"}
    for prompt, why in (
        ("deep owl", "RecursionError"),
        ("huge owl", "Number out of range"),
        ("teleported owl", "unknown event type 'JobTeleported'"),
    ):
        row = by_prompt[prompt]
        assert row["status"] == "failed", row
        assert "the worker cannot read event" in row["error"] and why in row["error"], row
        assert "submit it again within the request limits" in row["error"]
    assert len(failed_events) == 3
    assert {e["error_class"] for e in failed_events} == {"permanent"}
    assert {e["error"] for e in failed_events} == {
        by_prompt[p]["error"] for p in ("deep owl", "huge owl", "teleported owl")
    }

    # replay --verify --all names each poisoned job and checks the rest.
    async with Gateway.open(database_url, application_name="test") as gw:
        summary = await replay_cmd.verify_all(gw)
    assert (summary.checked, summary.ok, summary.mismatched) == (7, 4, 3)
    poisoned = {r.job_id: r for r in summary.results if not r.ok}
    assert unknown in poisoned and not set(good) & set(poisoned)
    for result in poisoned.values():
        assert result.error is not None and result.error.startswith("poisoned:"), result
        assert any("is undecodable" in p for p in result.problems), result
    assert any("JobTeleported" in p for p in poisoned[unknown].problems)

    out = await run_cli(database_url, "replay", "--all", "--verify")
    text = out.stdout.decode()
    assert out.returncode == 1, out.stderr.decode()
    assert "Traceback" not in out.stderr.decode()
    assert "checked 7 job(s): 4 ok, 3 mismatched" in text
    assert text.count("FAILED: poisoned") == 3
    # One poisoned job alone: reported, not a crash.
    out = await run_cli(database_url, "replay", str(unknown))
    assert out.returncode == 1 and b"JobTeleported" in out.stderr
    assert b"Traceback" not in out.stderr


async def test_poison_with_nothing_behind_it_leaves_the_claimer_idle(
    database_url: str, tmp_path: Path
) -> None:
    """Only poison in the queue: it is failed once, and the worker keeps serving new jobs."""
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        await insert_past_the_door(gw, "deep owl", DEEP_OPTS)
        await wait_all_terminal(gw, timeout=30)
        later = await insert_job(gw, "a later owl")
        await wait_all_terminal(gw, timeout=30)
        rows = {r["prompt"]: r["status"] for r in await _jobs(gw)}
        count = await gw.fetch_sql(
            "SELECT count(*) AS n FROM imagen.job_events WHERE type = 'JobFailed'"
        )
    assert rows == {"deep owl": "failed", "a later owl": "done"}, later
    assert count[0]["n"] == 1
