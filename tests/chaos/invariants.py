"""What must hold after every chaos scenario, whatever was killed, restarted or refused.

One checker for all scenarios. It collects every problem it finds (not just the first) and
fails with all of them plus the scenario's context line (which carries the seed):

- every job is terminal: ``done`` or ``failed`` (nothing ``pending``/``running``/``cancelled``),
  and every failed job has non-empty error text;
- exactly one ``imagen.images`` row per done job, none for a failed job, and
  ``jobs.image_id`` names that row;
- the store holds exactly one object per done job and nothing else (no orphans): its key is the
  row's ``storage_path``, its bytes hash to the row's ``sha256`` and have its length;
- exactly-once in the log: a done job has one ``ImageStored`` and one ``JobCompleted``, a
  failed job none and exactly one ``JobFailed``;
- the real CLI, ``python -m imagen_actors replay --verify --all``, exits 0 having checked every
  job (each job's events fold to its ``imagen.jobs`` row).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import attrs
import trio

from imagen_actors.db.gateway import Gateway

REPLAY_TIMEOUT_S = 120


@attrs.frozen
class Summary:
    """What the scenario ended with, for its own scenario-specific assertions."""

    done: int
    failed: int
    # Event type -> how many, over all jobs (JobRequeued, GenerationFailed, ...).
    events: Counter[str]
    # The error text of every failed job, by job id.
    errors: dict[str, str]
    # JobRequeued reasons, cut to their first words ("transient failure on attempt", ...).
    requeue_reasons: Counter[str]


def local_objects(root: Path, bucket: str) -> dict[str, bytes]:
    """Every object of a local store's bucket, key -> bytes (temp files of a killed write too)."""
    base = root / bucket
    if not base.exists():
        return {}
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}


async def check_invariants(
    gw: Gateway,
    dsn: str,
    objects: Mapping[str, bytes],
    *,
    jobs: int,
    context: str,
    bucket: str = "imagen-generated",
) -> Summary:
    problems: list[str] = []
    rows = await gw.fetch_sql("SELECT id, status, error, image_id FROM imagen.jobs")
    if len(rows) != jobs:
        problems.append(f"{len(rows)} jobs in imagen.jobs, expected {jobs}")
    by_status = Counter(r["status"] for r in rows)
    for r in rows:
        if r["status"] not in ("done", "failed"):
            problems.append(f"job {r['id']} is stuck {r['status']}")
        elif r["status"] == "failed" and not (r["error"] or "").strip():
            problems.append(f"failed job {r['id']} has no error text")
        elif r["status"] == "failed" and r["image_id"] is not None:
            problems.append(f"failed job {r['id']} names image {r['image_id']}")
    status = {r["id"]: r["status"] for r in rows}
    done = {r["id"]: r for r in rows if r["status"] == "done"}

    images = await gw.fetch_sql(
        "SELECT id, job_id, bucket, storage_path, bytes, sha256 FROM imagen.images"
    )
    per_job = Counter(i["job_id"] for i in images)
    for job_id, n in per_job.items():
        if n != 1:
            problems.append(f"job {job_id} has {n} images rows")
        if status.get(job_id) != "done":
            problems.append(f"job {job_id} is {status.get(job_id)} but has an images row")
    for job_id in done:
        if per_job[job_id] == 0:
            problems.append(f"done job {job_id} has no images row")
    usage = Counter(u["job_id"] for u in await gw.fetch_sql("SELECT job_id FROM mai.imagen_usage"))
    for job_id in done:
        if usage[job_id] != 1:
            problems.append(f"done job {job_id} has {usage[job_id]} usage rows, not 1")
    for image in images:
        job = done.get(image["job_id"])
        if job is not None and job["image_id"] != image["id"]:
            problems.append(f"job {job['id']}.image_id {job['image_id']} != image {image['id']}")
        if image["bucket"] != bucket:
            problems.append(f"image {image['id']} is in bucket {image['bucket']}, not {bucket}")

    problems += _check_objects(objects, [i for i in images if i["job_id"] in done])

    events = await gw.fetch_sql("SELECT job_id, type, data FROM imagen.job_events")
    per_type = Counter(e["type"] for e in events)
    per_job_type = Counter((e["job_id"], e["type"]) for e in events)
    for job_id, st in status.items():
        completed = per_job_type[(job_id, "JobCompleted")]
        stored = per_job_type[(job_id, "ImageStored")]
        failed = per_job_type[(job_id, "JobFailed")]
        want = (1, 1, 0) if st == "done" else (0, 0, 1)
        if (completed, stored, failed) != want and st in ("done", "failed"):
            problems.append(
                f"{st} job {job_id} has {completed} JobCompleted, {stored} ImageStored, "
                f"{failed} JobFailed events (want {want})"
            )

    problems += await _replay_verify_all(dsn, jobs)
    summary = Summary(
        done=by_status["done"],
        failed=by_status["failed"],
        events=per_type,
        errors={str(r["id"]): r["error"] for r in rows if r["status"] == "failed"},
        requeue_reasons=Counter(
            " ".join(str(e["data"].get("reason", "")).split()[:3])
            for e in events
            if e["type"] == "JobRequeued"
        ),
    )
    shown = "\n  ".join(problems[:40]) + (
        f"\n  ... {len(problems) - 40} more" if len(problems) > 40 else ""
    )
    assert not problems, f"{context}\n{describe(summary)}\ninvariants broken:\n  {shown}"
    return summary


def _check_objects(objects: Mapping[str, bytes], images: list[dict[str, object]]) -> list[str]:
    problems: list[str] = []
    wanted = {str(i["storage_path"]): i for i in images}
    for key in sorted(set(objects) - set(wanted)):
        problems.append(f"orphan object {key!r} ({len(objects[key])} bytes): no done job owns it")
    for key, image in wanted.items():
        data = objects.get(key)
        if data is None:
            problems.append(f"done job {image['job_id']}: object {key!r} is missing")
        elif hashlib.sha256(data).hexdigest() != image["sha256"] or len(data) != image["bytes"]:
            problems.append(f"done job {image['job_id']}: object {key!r} differs from its row")
    return problems


async def _replay_verify_all(dsn: str, jobs: int) -> list[str]:
    """The operator's own check, run as the operator runs it."""
    env = {**os.environ, "IMAGEN_WORKER_DATABASE_URL": dsn}
    proc = await trio.to_thread.run_sync(
        lambda: subprocess.run(
            [sys.executable, "-m", "imagen_actors", "replay", "--verify", "--all"],
            env=env,
            capture_output=True,
            text=True,
            timeout=REPLAY_TIMEOUT_S,
        )
    )
    expected = f"checked {jobs} job(s): {jobs} ok, 0 mismatched"
    if proc.returncode != 0 or expected not in proc.stdout:
        tail = (proc.stdout + proc.stderr)[-2000:]
        return [f"replay --verify --all exited {proc.returncode}, wanted {expected!r}:\n{tail}"]
    return []


def describe(summary: Summary) -> str:
    kinds = ", ".join(f"{t} {n}" for t, n in sorted(summary.events.items()))
    reasons = ", ".join(f"{r!r} x{n}" for r, n in summary.requeue_reasons.most_common())
    failures = Counter(_error_kind(e) for e in summary.errors.values())
    return (
        f"outcome: {summary.done} done, {summary.failed} failed "
        f"({', '.join(f'{k!r} x{n}' for k, n in failures.most_common()) or 'none'})\n"
        f"events: {kinds}\nrequeues: {reasons or 'none'}"
    )


def _error_kind(error: str) -> str:
    return " ".join(error.split()[:4])
