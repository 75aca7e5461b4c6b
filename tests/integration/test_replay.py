"""replay: timelines and --verify against real jobs a worker ran, end to end via the CLI."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import trio

from imagen_actors.cli import replay_parallel, replay_verify
from imagen_actors.cli.commands import replay as replay_cmd
from imagen_actors.core import events as ev
from imagen_actors.db.gateway import Gateway
from tests.support.cli import run_cli
from tests.support.jobs import insert_job
from tests.support.worker import make_config, running_worker, wait_all_terminal, wait_terminal

pytestmark = pytest.mark.db


async def _run_jobs(database_url: str, tmp_path: Path) -> tuple[uuid.UUID, uuid.UUID]:
    """One done and one failed job, produced by a real worker that has stopped since."""
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        done = await insert_job(gw, "a lighthouse at dusk")
        failed = await insert_job(gw, "[fail:permanent] owl")
        await wait_all_terminal(gw)
        # Let the usage recorder finish with both before the worker stops.
        with trio.fail_after(10):
            while True:
                rows = await gw.fetch_sql(
                    "SELECT count(*) AS n FROM imagen.job_events "
                    "WHERE type IN ('UsageRecorded', 'UsageFailed') AND job_id = $1",
                    done,
                )
                if rows[0]["n"] == 1:
                    break
                await trio.sleep(0.05)
    return done, failed


async def test_verify_passes_then_catches_tampered_row(database_url: str, tmp_path: Path) -> None:
    """--verify passes on worker-made jobs and names `error` after a hand UPDATE (exit 1)."""
    done, failed = await _run_jobs(database_url, tmp_path)
    async with Gateway.open(database_url, application_name="test-replay") as gw:
        for job in (done, failed):
            result = await replay_cmd.verify_one(gw, job)
            assert result.ok, result
        out = await run_cli(database_url, "replay", str(done), "--verify")
        assert out.returncode == 0, out.stderr.decode()
        assert b"OK" in out.stdout
        await gw.execute_sql("UPDATE imagen.jobs SET error = 'x' WHERE id = $1", done)
        result = await replay_cmd.verify_one(gw, done)
        assert not result.ok and [d.column for d in result.diffs] == ["error"]
        assert (result.diffs[0].replayed, result.diffs[0].stored) == (None, "x")
    out = await run_cli(database_url, "replay", str(done), "--verify")
    assert out.returncode == 1
    text = out.stdout.decode()
    assert "MISMATCH" in text and "error" in text and "'x'" in text
    out = await run_cli(database_url, "replay", str(done), "--verify", "--json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["ok"] is False
    assert doc["diffs"] == [{"column": "error", "replayed": None, "stored": "x"}]


async def test_verify_all_counts_and_lists_mismatches(database_url: str, tmp_path: Path) -> None:
    """--all checks every job, reports the counts and each mismatching job."""
    done, failed = await _run_jobs(database_url, tmp_path)
    out = await run_cli(database_url, "replay", "--all", "--verify")
    assert out.returncode == 0, out.stderr.decode()
    assert b"checked 2 job(s): 2 ok, 0 mismatched" in out.stdout
    async with Gateway.open(database_url, application_name="test-replay") as gw:
        await gw.execute_sql("UPDATE imagen.jobs SET attempts = 2 WHERE id = $1", failed)
        pending = await insert_job(gw)
        summary = await replay_cmd.verify_all(gw)
    assert (summary.checked, summary.ok, summary.mismatched) == (3, 2, 1)
    [bad] = [r for r in summary.results if not r.ok]
    assert bad.job_id == failed and [d.column for d in bad.diffs] == ["attempts"]
    out = await run_cli(database_url, "replay", "--all", "--json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert (doc["checked"], doc["mismatched"]) == (3, 1)
    assert str(pending) in {r["job_id"] for r in doc["results"]}
    out = await run_cli(database_url, "replay", "--all")
    assert out.returncode == 1
    assert str(failed) in out.stdout.decode() and str(done) not in out.stdout.decode()


async def test_timeline_of_a_done_job(database_url: str, tmp_path: Path) -> None:
    """The timeline lists every event with actor, worker, attempt and storage path."""
    done, failed = await _run_jobs(database_url, tmp_path)
    out = await run_cli(database_url, "replay", str(done))
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    for fragment in ("JobSubmitted", "JobClaimed", "attempt=1", "JobCompleted", ".png", "t1"):
        assert fragment in text
    out = await run_cli(database_url, "replay", str(failed), "--json")
    doc = json.loads(out.stdout)
    assert doc["status"] == "failed"
    failed_event = next(e for e in doc["events"] if e["type"] == "JobFailed")
    assert failed_event["details"]["error_class"] == "permanent"
    assert [e["seq"] for e in doc["events"]] == list(range(1, len(doc["events"]) + 1))
    out = await run_cli(database_url, "replay", str(uuid.uuid4()))
    assert out.returncode == 1 and b"no job" in out.stderr


async def test_log_file_timelines_and_verify(database_url: str, tmp_path: Path) -> None:
    """--log reads a JSONL event log: timelines grouped by job; --verify folds each stream."""
    done, failed = await _run_jobs(database_url, tmp_path)
    async with Gateway.open(database_url, application_name="test-replay") as gw:
        a = await gw.load_events(done)
        b = await gw.load_events(failed)
    log = tmp_path / "events.jsonl"
    # Interleaved, as a log of several jobs would be.
    lines = [ev.encode(e) for pair in zip(a, b, strict=False) for e in pair]
    lines += [ev.encode(e) for e in a[len(b) :]] + [ev.encode(e) for e in b[len(a) :]]
    log.write_bytes(b"\n".join(lines) + b"\n")
    out = await run_cli(None, "replay", "--log", str(log))
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    assert text.index(f"job {done}") < text.index(f"job {failed}")
    assert text.count("JobSubmitted") == 2
    out = await run_cli(None, "replay", "--log", str(log), "--verify")
    assert out.returncode == 0, out.stderr.decode()
    assert b"2 ok, 0 mismatched" in out.stdout
    # Drop the done job's claim: its stream no longer folds.
    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"\n".join(ev.encode(e) for e in a if not isinstance(e, ev.JobClaimed)))
    out = await run_cli(None, "replay", "--log", str(broken), "--verify", "--json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["mismatched"] == 1 and "not allowed" in doc["results"][0]["error"]


async def test_rerun_reproduces_without_touching_the_original(
    database_url: str, tmp_path: Path
) -> None:
    """--rerun --backend mock redoes a failed job's request in-process; the job is untouched."""
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        job = await insert_job(gw, "rerun me", backend="flux-dev", seed=11)
        row = await wait_terminal(gw, job)
        assert row["status"] == "failed"
    env = {**os.environ, "IMAGEN_WORKER_DATABASE_URL": database_url}
    r = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [
                sys.executable,
                "-m",
                "imagen_actors",
                "replay",
                str(job),
                "--rerun",
                "--backend",
                "mock",
                "--out",
                str(tmp_path / "rerun"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
    )
    assert r.returncode == 0, r.stderr
    image = Path(r.stdout.strip())
    assert image.name == "rerun-me-11.png" and image.exists()
    async with Gateway.open(database_url) as gw:
        after = await gw.fetchrow("load_job", job)
        assert after is not None and after["version"] == row["version"]
        assert after["status"] == "failed"
        jobs = await gw.fetch_sql("SELECT count(*) AS n FROM imagen.jobs")
        assert jobs == [{"n": 1}]
    assert (tmp_path / "rerun" / "imagen-events.jsonl").exists()


async def test_verify_all_streams_pages_and_keeps_only_what_failed(
    database_url: str, tmp_path: Path
) -> None:
    """Page after page (here 2 jobs a page), every job is seen once by ``each``; the summary
    keeps only the jobs that did not verify, so memory does not grow with the history."""
    done, failed = await _run_jobs(database_url, tmp_path)
    async with Gateway.open(database_url, application_name="test-replay") as gw:
        extra = [await insert_job(gw, f"pending {i}") for i in range(3)]
        await gw.execute_sql("UPDATE imagen.jobs SET attempts = 2 WHERE id = $1", failed)
        seen: list[uuid.UUID] = []
        progress: list[int] = []
        summary = await replay_cmd.verify_all(
            gw, each=lambda r: seen.append(r.job_id), progress=progress.append, page_size=2
        )
    assert sorted(seen) == sorted([done, failed, *extra])
    assert progress == [2, 4, 5]
    assert (summary.checked, summary.ok, summary.mismatched) == (5, 4, 1)
    assert [r.job_id for r in summary.results] == [failed]


async def test_verify_all_draws_a_progress_bar_on_a_terminal_only(
    database_url: str, tmp_path: Path
) -> None:
    """stderr on a terminal gets the bar (and it is erased at the end); a pipe gets none."""
    await _run_jobs(database_url, tmp_path)
    controller, terminal = os.openpty()
    env = {**os.environ, "IMAGEN_WORKER_DATABASE_URL": database_url}
    try:
        with trio.fail_after(60):
            done = await trio.run_process(
                [sys.executable, "-m", "imagen_actors", "replay", "--all"],
                env=env,
                capture_stdout=True,
                stderr=terminal,
                check=False,
            )
        os.close(terminal)
        terminal = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO once the terminal side is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert done.returncode == 0
    assert b"checked 2 job(s): 2 ok, 0 mismatched" in done.stdout
    assert b"] 2/2" in drawn and drawn.endswith(b"\r")
    piped = await run_cli(database_url, "replay", "--all")
    assert piped.returncode == 0 and piped.stderr == b""


async def test_verify_all_in_worker_processes_finds_what_one_process_finds(
    database_url: str, tmp_path: Path
) -> None:
    """Two processes, each checking half the ids: the same counts and the same failed job as
    one, every job seen once by ``each``; without ``each`` only the failures come back."""
    done, failed = await _run_jobs(database_url, tmp_path)
    async with Gateway.open(database_url, application_name="test-replay") as gw:
        extra = [await insert_job(gw, f"pending {i}") for i in range(3)]
        await gw.execute_sql("UPDATE imagen.jobs SET attempts = 2 WHERE id = $1", failed)
        one = await replay_cmd.verify_all(gw, workers=1)
        seen: list[uuid.UUID] = []
        progress: list[int] = []
        two = await replay_cmd.verify_all(
            gw, each=lambda r: seen.append(r.job_id), progress=progress.append, workers=2,
            page_size=2,
        )  # fmt: skip
        counted = await replay_cmd.verify_all(gw, workers=2)
    assert sorted(seen) == sorted([done, failed, *extra])
    assert progress[-1] == 5 and progress == sorted(progress)
    for summary in (one, two, counted):
        assert (summary.checked, summary.ok, summary.mismatched) == (5, 4, 1)
        assert [r.job_id for r in summary.results] == [failed]
    assert two.results == one.results  # the diffs keep their Python values across the pipe
    assert [d.column for d in one.results[0].diffs] == ["attempts"]


def test_worker_shares_cover_every_id_once() -> None:
    """The (after, last] ranges are contiguous, from the first id to the last."""
    for workers in (1, 2, 3, 4):
        ranges = replay_parallel.shares(workers)
        assert len(ranges) == workers
        assert ranges[0][0] == replay_verify.FIRST_ID and ranges[-1][1] == replay_verify.LAST_ID
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
