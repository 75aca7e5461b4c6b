from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagen_actors.cli.commands.usage import format_table
from tests.support.jobs import OWNER
from tests.support.roles import run_as

pytestmark = pytest.mark.db

ROWS = [  # backend, model, latency_ms, cost, created_at
    ("mock", "mock-gradient-v1", 10, 0.0, "2026-11-01"),
    ("mock", "mock-gradient-v1", 30, 0.0, "2026-11-02"),
    ("mock", "mock-gradient-v1", 20, 0.0, "2026-11-03"),
    ("flux-schnell-replicate", "black-forest-labs/flux-schnell", 1500, 0.003, "2026-11-04"),
    ("flux-schnell-replicate", "black-forest-labs/flux-schnell", 2500, 0.003, "2026-11-05"),
    ("flux-dev-replicate", "black-forest-labs/flux-dev", 9000, 0.025, "2026-10-01"),
]


def seed_usage(dsn: str) -> None:
    for backend, model, latency, cost, day in ROWS:
        run_as(
            dsn,
            None,
            None,
            "INSERT INTO mai.imagen_usage (created_at, backend, model, seed, prompt_hash, "
            "latency_ms, cost_usd_estimate, caller) VALUES ($1::date, $2, $3, 1, "
            "repeat('a', 64), $4, $5, 'tester@host')",
            day_date(day),
            backend,
            model,
            latency,
            cost,
        )


def day_date(text: str) -> object:
    import datetime

    return datetime.date.fromisoformat(text)


def usage(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IMAGEN_WORKER_DATABASE_URL": dsn}
    return subprocess.run(
        [sys.executable, "-m", "imagen_actors", "usage", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_usage_groups_count_cost_and_p50(database_url: str) -> None:
    """Grouped by backend and model: counts, summed cost, p50 latency and a totals row."""
    seed_usage(database_url)
    r = usage(database_url, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    groups = {(g["backend"], g["model"]): g for g in report["groups"]}
    mock = groups[("mock", "mock-gradient-v1")]
    assert (mock["images"], mock["p50_latency_ms"], mock["cost_usd"]) == (3, 20.0, 0.0)
    schnell = groups[("flux-schnell-replicate", "black-forest-labs/flux-schnell")]
    assert schnell["images"] == 2 and schnell["p50_latency_ms"] == 2000.0
    assert schnell["cost_usd"] == pytest.approx(0.006)
    assert report["totals"]["images"] == 6
    assert report["totals"]["cost_usd"] == pytest.approx(0.031)


def test_usage_since_filters_and_table_has_totals(database_url: str) -> None:
    """--since drops older rows; the text table ends with a TOTAL row."""
    seed_usage(database_url)
    r = usage(database_url, "--since", "2026-11-01")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["backend", "model", "images"]
    assert lines[-1].split()[:3] == ["TOTAL", "5", "0.0060"]
    assert not any("flux-dev" in line for line in lines)


def test_usage_raw_lists_rows_without_prompts(database_url: str) -> None:
    """--raw lists rows newest first with the caller and only a prompt hash."""
    seed_usage(database_url)
    r = usage(database_url, "--raw", "--json")
    rows = json.loads(r.stdout)
    assert len(rows) == 6 and rows[0]["created_at"].startswith("2026-11-05")
    assert all(row["caller"] == "tester@host" and "prompt" not in row for row in rows)


def test_bad_since_is_a_clear_error(database_url: str) -> None:
    """--since that is not a date exits 2 with an example."""
    r = usage(database_url, "--since", "last tuesday")
    assert r.returncode == 2 and "--since 2026-11-01" in r.stderr


def test_format_table_empty() -> None:
    """An empty report still prints a header and a zero totals row."""
    out = format_table([], {"images": 0, "cost_usd": 0.0, "p50_latency_ms": None})
    assert out.splitlines()[-1].split() == ["TOTAL", "0", "0.0000", "-"]


def gen(
    dsn: str | None, tmp: Path, *args: str, owner_env: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("IMAGEN_WORKER_DATABASE_URL", "IMAGEN_OWNER_USER_ID")
    }
    env["IMAGEN_HOME"] = str(tmp / "home")
    if dsn:
        env["IMAGEN_WORKER_DATABASE_URL"] = dsn
    if owner_env:
        env["IMAGEN_OWNER_USER_ID"] = owner_env
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "imagen_actors",
            "generate",
            "owl",
            "--size",
            "64x64",
            "--out",
            str(tmp / "out"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_cloud_without_owner_is_a_clear_error(database_url: str, tmp_path: Path) -> None:
    """generate --cloud with neither --owner nor IMAGEN_OWNER_USER_ID exits 2 naming both."""
    r = gen(database_url, tmp_path, "--cloud")
    assert r.returncode == 2
    assert "--owner UUID" in r.stderr and "IMAGEN_OWNER_USER_ID" in r.stderr


def test_cloud_without_database_is_a_clear_error(tmp_path: Path) -> None:
    """generate --cloud with no DSN says which variable to set (exit 2: --cloud conflicts)."""
    r = gen(None, tmp_path, "--cloud", owner_env=str(OWNER))
    assert r.returncode == 2 and "IMAGEN_WORKER_DATABASE_URL" in r.stderr


def test_owner_flag_wins_over_environment(database_url: str, tmp_path: Path) -> None:
    """--owner beats IMAGEN_OWNER_USER_ID; the image row carries that owner."""
    flag = "33333333-3333-4333-8333-333333333333"
    r = gen(database_url, tmp_path, "--cloud", "--owner", flag, owner_env=str(OWNER))
    assert r.returncode == 0, r.stderr
    rows = run_as(database_url, None, None, "SELECT owner_user_id::text AS o FROM imagen.images")
    assert rows == [{"o": flag}]


def test_environment_owner_used_when_no_flag(database_url: str, tmp_path: Path) -> None:
    """Without --owner, IMAGEN_OWNER_USER_ID owns the job and its image."""
    r = gen(database_url, tmp_path, "--cloud", owner_env=str(OWNER))
    assert r.returncode == 0, r.stderr
    rows = run_as(
        database_url,
        None,
        None,
        "SELECT i.owner_user_id = j.owner_user_id AS same, i.owner_user_id::text AS o "
        "FROM imagen.images i JOIN imagen.jobs j ON j.id = i.job_id",
    )
    assert rows == [{"same": True, "o": str(OWNER)}]
