"""archive --before --to FILE and replay --log FILE, end to end via the CLI on worker-made jobs."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trio

from imagen_actors.db.gateway import Gateway
from tests.support.cli import run_cli
from tests.support.jobs import OTHER_OWNER, OWNER, insert_job
from tests.support.worker import make_config, running_worker, wait_all_terminal

pytestmark = pytest.mark.db


async def _settled(gw: Gateway) -> None:
    """Every job terminal and every done job's usage recorded (its last event)."""
    await wait_all_terminal(gw)
    with trio.fail_after(20):
        while await gw.fetch_sql(
            "SELECT 1 FROM imagen.jobs j WHERE j.status = 'done' AND NOT EXISTS ("
            " SELECT 1 FROM imagen.job_events e WHERE e.job_id = j.id"
            " AND e.type IN ('UsageRecorded', 'UsageFailed'))"
        ):
            await trio.sleep(0.05)


async def _history(database_url: str, tmp_path: Path) -> dict[str, Any]:
    """Old finished jobs (2 done and 1 failed by a worker, 1 cancelled while pending), then a
    cutoff, then a newer cancelled job and a pending one."""
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        old = [
            await insert_job(gw, "a lighthouse at dusk"),
            await insert_job(gw, "a red fox, 50% off"),
            await insert_job(gw, "[fail:permanent] owl"),
        ]
        await _settled(gw)
    async with Gateway.open(database_url, application_name="test-archive") as gw:
        old.append(await insert_job(gw, "never mind", backend="nobody"))
        await gw.cancel_job(old[-1], "changed my mind")
        await trio.sleep(0.01)
        cutoff = (await gw.fetch_sql("SELECT now() AS t"))[0]["t"]
        await trio.sleep(0.01)
        new = [await insert_job(gw, "a newer heron", backend="nobody")]
        await gw.cancel_job(new[0], None)
        pending = await insert_job(gw, "still waiting", backend="nobody")
    return {"old": old, "new": new, "pending": pending, "cutoff": cutoff}


async def _counts(gw: Gateway) -> dict[str, Any]:
    rows = await gw.fetch_sql("SELECT status, count(*)::int AS n FROM imagen.jobs GROUP BY 1")
    return {r["status"]: r["n"] for r in rows}


async def test_archive_moves_exactly_the_old_finished_streams(
    database_url: str, tmp_path: Path
) -> None:
    h = await _history(database_url, tmp_path)
    old, new, pending = h["old"], h["new"], h["pending"]
    async with Gateway.open(database_url, application_name="test-archive") as gw:
        heads = {
            r["job_id"]: r["hash"]
            for r in await gw.fetch_sql(
                "SELECT DISTINCT ON (job_id) job_id, hash FROM imagen.job_events"
                " WHERE job_id = ANY($1::uuid[]) ORDER BY job_id, seq DESC",
                old,
            )
        }
        old_events = (
            await gw.fetch_sql(
                "SELECT count(*)::int AS n FROM imagen.job_events WHERE job_id = ANY($1::uuid[])",
                old,
            )
        )[0]["n"]
        keys_before = await gw.fetch_sql("SELECT * FROM imagen.storage_keys ORDER BY 1, 2")
        usage_before = await gw.fetch_sql("SELECT * FROM mai.imagen_usage ORDER BY id")
    target = tmp_path / "old.jsonl.gz"
    out = await run_cli(
        database_url,
        "archive",
        "--before",
        h["cutoff"].isoformat(),
        "--to",
        str(target),
        "--batch",
        "2",
        "--json",
    )
    assert out.returncode == 0, out.stderr.decode()
    summary = json.loads(out.stdout)
    assert (summary["jobs"], summary["events"], summary["images"]) == (4, old_events, 2)
    async with Gateway.open(database_url, application_name="test-archive") as gw:
        left = {r["id"] for r in await gw.fetch_sql("SELECT id FROM imagen.jobs")}
        assert left == {*new, pending}
        assert not await gw.fetch_sql(
            "SELECT 1 FROM imagen.job_events WHERE job_id = ANY($1::uuid[])", old
        )
        assert not await gw.fetch_sql(
            "SELECT 1 FROM imagen.images WHERE job_id = ANY($1::uuid[])", old
        )
        # Their stage times (schema 0018) go with them; the newer ended jobs keep theirs.
        kept = {
            r["job_id"] for r in await gw.fetch_sql("SELECT job_id FROM imagen.job_stage_times")
        }
        assert not kept & set(old) and set(new) <= kept
        # Reservations and billing stay; the counters were counted down with the DELETEs.
        assert await gw.fetch_sql("SELECT * FROM imagen.storage_keys ORDER BY 1, 2") == keys_before
        assert await gw.fetch_sql("SELECT * FROM mai.imagen_usage ORDER BY id") == usage_before
        assert await gw.status_counts() == await _counts(gw) == {"cancelled": 1, "pending": 1}
        [run] = await gw.fetch_sql("SELECT * FROM imagen.archives")
        assert run["kind"] == "archive" and run["finished_at"] is not None
        assert (run["jobs"], run["events"], run["images"]) == (4, old_events, 2)
        assert run["file_name"] == str(target.resolve())
        assert run["bytes"] == target.stat().st_size
        assert run["file_sha256"] == summary["sha256"]
        assert run["cutoff"] == h["cutoff"] and run["format_version"] == 1
        batches = await gw.fetch_sql("SELECT * FROM imagen.archive_batches ORDER BY batch")
        assert [b["jobs"] for b in batches] == [2, 2]
        archived = await gw.fetch_sql("SELECT * FROM imagen.archived_jobs")
        assert {r["job_id"]: r["head"] for r in archived} == heads
    with gzip.open(target, "rb") as fh:
        lines = fh.read().splitlines()
    assert json.loads(lines[0])["format"] == "imagen-actors archive"
    assert {json.loads(line)["job"]["id"] for line in lines[1:]} == {str(j) for j in old}

    out = await run_cli(None, "replay", "--log", str(target))
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    assert b"checked 4 job(s): 4 ok, 0 mismatched" in out.stdout
    assert summary["sha256"].encode() in out.stderr
    out = await run_cli(database_url, "replay", "--all")
    assert out.returncode == 0 and b"checked 2 job(s): 2 ok" in out.stdout


def _rewrite(path: Path, edit: Any) -> Path:
    with gzip.open(path, "rb") as fh:
        lines = fh.read().splitlines()
    changed = [lines[0], *(edit(line) for line in lines[1:])]
    out = path.with_name("tampered-" + path.name)
    out.unlink(missing_ok=True)
    with gzip.open(out, "wb") as fh:
        fh.write(b"\n".join(changed) + b"\n")
    return out


async def test_a_tampered_archive_is_reported(database_url: str, tmp_path: Path) -> None:
    h = await _history(database_url, tmp_path)
    target = tmp_path / "a.jsonl.gz"
    out = await run_cli(
        database_url, "archive", "--before", h["cutoff"].isoformat(), "--to", str(target)
    )
    assert out.returncode == 0, out.stderr.decode()

    # A changed prompt in the JobSubmitted event (hashes left as they were).
    bad = _rewrite(target, lambda line: line.replace(b"lighthouse at dusk", b"lighthouse at dawn"))
    out = await run_cli(None, "replay", "--log", str(bad))
    text = out.stdout.decode()
    assert out.returncode == 1, text
    assert "event 1 (JobSubmitted): its hash does not chain" in text
    assert "checked 4 job(s): 3 ok, 1 mismatched" in text

    # A changed event further on: the claim's attempt number.
    def bump_attempt(line: bytes) -> bytes:
        doc = json.loads(line)
        for e in doc["events"]:
            if e["type"] == "JobClaimed":
                e["data"]["attempt"] = 2
                break
        return json.dumps(doc).encode()

    out = await run_cli(None, "replay", "--log", str(_rewrite(target, bump_attempt)), "--json")
    doc = json.loads(out.stdout)
    # Three jobs were claimed (the cancelled one never was).
    assert out.returncode == 1 and doc["mismatched"] == 3
    bad = [r for r in doc["results"] if not r["ok"]]
    assert all(any("(JobClaimed): its hash" in p for p in r["problems"]) for r in bad)

    # Only the archived row changed: the replay of the intact chain disagrees with it.
    def row_error(line: bytes) -> bytes:
        doc = json.loads(line)
        doc["job"]["attempts"] = 3
        return json.dumps(doc).encode()

    out = await run_cli(None, "replay", "--log", str(_rewrite(target, row_error)))
    assert out.returncode == 1 and out.stdout.count(b"MISMATCH in 1 column(s)") == 4


async def test_refuses_an_existing_file_and_dry_run_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    h = await _history(database_url, tmp_path)
    async with Gateway.open(database_url, application_name="test-archive") as gw:
        before = await _counts(gw)
    target = tmp_path / "exists.jsonl.gz"
    target.write_bytes(b"keep me")
    out = await run_cli(
        database_url, "archive", "--before", h["cutoff"].isoformat(), "--to", str(target)
    )
    assert out.returncode == 2
    assert b"--to" in out.stderr and b"exists" in out.stderr
    assert target.read_bytes() == b"keep me"

    dry = tmp_path / "dry.jsonl.gz"
    out = await run_cli(
        database_url,
        "archive",
        "--before",
        h["cutoff"].isoformat(),
        "--to",
        str(dry),
        "--dry-run",
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.startswith(b"would move 4 job(s)")
    assert not dry.exists()
    async with Gateway.open(database_url, application_name="test-archive") as gw:
        assert await _counts(gw) == before
        assert not await gw.fetch_sql("SELECT 1 FROM imagen.archives")
    out = await run_cli(database_url, "archive", "--before", "all", "--dry-run")
    assert out.returncode == 2 and b"--before" in out.stderr
    out = await run_cli(database_url, "archive", "--before", "90d")
    assert out.returncode == 2 and b"--to" in out.stderr


def test_the_log_stays_append_only(database_url: str) -> None:
    """A plain DELETE is refused, also beside a record of another job, or of this job made
    by an earlier transaction; UPDATE and TRUNCATE are refused as before."""
    asyncio.run(_append_only(database_url))


async def _append_only(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    insert = (
        "INSERT INTO imagen.jobs (owner_user_id, prompt, backend)"
        " VALUES (gen_random_uuid(), $1, 'mock') RETURNING id"
    )
    job = await conn.fetchval(insert, "an owl")
    other = await conn.fetchval(insert, "another owl")
    try:
        for sql in (
            "DELETE FROM imagen.job_events WHERE job_id = $1",
            "UPDATE imagen.job_events SET actor = 'x' WHERE job_id = $1",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(sql, job)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("TRUNCATE imagen.job_events CASCADE")
        run = await conn.fetchval("SELECT imagen.archive_open('archive', now(), NULL, '/tmp/x', 1)")
        record = (
            "INSERT INTO imagen.archived_jobs (job_id, archive_id, batch, owner_user_id,"
            " created_at, status, events, head) VALUES ($1, $2, 1, gen_random_uuid(), now(),"
            " 'done', 1, sha256(''::bytea))"
        )
        async with conn.transaction():
            await conn.execute(record, other, run)
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute("DELETE FROM imagen.job_events WHERE job_id = $1", job)
        await conn.execute(record, job, run)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM imagen.job_events WHERE job_id = $1", job)
        # The record itself cannot be taken back.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="record"):
            await conn.execute("DELETE FROM imagen.archived_jobs WHERE job_id = $1", job)
        # A batch that went stale (the version moved) moves nothing.
        with pytest.raises(asyncpg.SerializationError):
            await conn.fetch(
                "SELECT * FROM imagen.archive_streams($1, 1, $2, $3, 0, 1, NULL, 1)",
                run,
                [other],
                [7],
            )
        assert (
            await conn.fetchval("SELECT count(*) FROM imagen.job_events WHERE job_id = $1", other)
            == 1
        )
    finally:
        await conn.close()


async def test_a_rerun_after_a_failed_batch_loses_nothing(
    database_url: str, tmp_path: Path
) -> None:
    """Batch 2 of 3 is refused by the database: batch 1 stays archived and recorded, the
    file is cut back to it, the run stays unfinished; the next run moves the rest."""
    h = await _history(database_url, tmp_path)
    async with Gateway.open(database_url, application_name="test-archive") as gw:
        await gw.execute_sql(
            "CREATE FUNCTION public.refuse_batch_2() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN IF NEW.batch = 2 THEN RAISE EXCEPTION 'disk full'; END IF;"
            " RETURN NEW; END $$"
        )
        await gw.execute_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON imagen.archive_batches"
            " FOR EACH ROW EXECUTE FUNCTION public.refuse_batch_2()"
        )
        first = tmp_path / "first.jsonl.gz"
        out = await run_cli(
            database_url,
            "archive",
            "--before",
            h["cutoff"].isoformat(),
            "--to",
            str(first),
            "--batch",
            "1",
        )
        assert out.returncode == 4 and b"disk full" in out.stderr
        [run] = await gw.fetch_sql("SELECT * FROM imagen.archives")
        assert run["finished_at"] is None and run["jobs"] == 1
        assert run["bytes"] == first.stat().st_size
        await gw.execute_sql("DROP TRIGGER refuse ON imagen.archive_batches")
    second = tmp_path / "second.jsonl.gz"
    out = await run_cli(
        database_url, "archive", "--before", h["cutoff"].isoformat(), "--to", str(second)
    )
    assert out.returncode == 0, out.stderr.decode()
    ids: list[str] = []
    for f in (first, second):
        out = await run_cli(None, "replay", "--log", str(f), "--json")
        assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
        with gzip.open(f, "rb") as fh:
            ids += [json.loads(line)["job"]["id"] for line in fh.read().splitlines()[1:]]
    assert sorted(ids) == sorted(str(j) for j in h["old"])
    async with Gateway.open(database_url, application_name="test-archive") as gw:
        assert len(await gw.fetch_sql("SELECT 1 FROM imagen.archived_jobs")) == 4
        assert await gw.status_counts() == await _counts(gw)


def test_before_takes_the_since_forms() -> None:
    import argparse

    from imagen_actors.cli.commands.archive import before

    assert before("90d") < before("1d")
    with pytest.raises(argparse.ArgumentTypeError, match="span like 90m, 24h, 7d"):
        before("ninety days")
    with pytest.raises(argparse.ArgumentTypeError, match="future"):
        before("2999-01-01")


async def test_forget_owner_removes_everything_of_theirs(database_url: str, tmp_path: Path) -> None:
    """Their jobs, events, images, objects and keys go (recorded, nothing kept); another
    owner's stay; an unfinished job stops it first; archive files holding them are named."""
    h = await _history(database_url, tmp_path)
    cfg_path = tmp_path / "imagen-t1.yaml"
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        kept = await insert_job(gw, "someone else's owl", owner=OTHER_OWNER)
        await _settled(gw)
    # Two of the owner's old jobs are in an archive file already.
    archived = tmp_path / "old.jsonl.gz"
    out = await run_cli(
        database_url,
        "archive",
        "--before",
        h["cutoff"].isoformat(),
        "--to",
        str(archived),
        "--batch",
        "2",
    )
    assert out.returncode == 0, out.stderr.decode()
    objects = tmp_path / "objects"
    # One more done job of the owner in the live tables, with its object.
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        mine = await insert_job(gw, "my last owl")
        await _settled(gw)
        [image] = await gw.fetch_sql("SELECT * FROM imagen.images WHERE job_id = $1", mine)
    async with Gateway.open(database_url, application_name="test-archive") as gw:
        await insert_job(gw, "waiting", backend="nobody")
    out = await run_cli(database_url, "forget-owner", str(OWNER), "--config", str(cfg_path))
    assert out.returncode == 1 and b"not finished" in out.stderr and b"cancel" in out.stderr
    async with Gateway.open(database_url, application_name="test-archive") as gw:
        for r in await gw.fetch_sql(
            "SELECT id FROM imagen.jobs WHERE status = 'pending' AND owner_user_id = $1", OWNER
        ):
            await gw.cancel_job(r["id"], None)
    assert any(objects.rglob("*.png"))
    out = await run_cli(
        database_url, "forget-owner", str(OWNER), "--config", str(cfg_path), "--dry-run"
    )
    assert out.returncode == 0 and out.stdout.startswith(b"would move 4 job(s)"), out.stdout
    out = await run_cli(database_url, "forget-owner", str(OWNER), "--config", str(cfg_path))
    assert out.returncode == 0, out.stderr.decode()
    assert b"still holds 4 job(s)" in out.stderr and str(archived.resolve()).encode() in out.stderr
    async with Gateway.open(database_url, application_name="test-archive") as gw:
        assert [r["id"] for r in await gw.fetch_sql("SELECT id FROM imagen.jobs")] == [kept]
        assert not await gw.fetch_sql(
            "SELECT 1 FROM imagen.job_events e WHERE e.data->>'owner_user_id' = $1", str(OWNER)
        )
        assert not await gw.fetch_sql(
            "SELECT 1 FROM imagen.storage_keys WHERE storage_path = $1", image["storage_path"]
        )
        [run] = await gw.fetch_sql("SELECT * FROM imagen.archives WHERE kind = 'forget'")
        assert run["owner_user_id"] == OWNER and run["jobs"] == 4 and run["file_name"] is None
        assert await gw.status_counts() == await _counts(gw)
    assert not (objects / image["bucket"] / image["storage_path"]).exists()
    assert len(list(objects.rglob("*.png"))) == 1  # the other owner's
