from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from imagen_actors.db.migrations import discover


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagen_actors", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.mark.db
def test_migrate_with_no_dsn_creates_embedded_database() -> None:
    """On a fresh machine, migrate starts the embedded Postgres and prints its DSN."""
    # Not tmp_path: as root, pgserver runs initdb as its own user, which cannot enter
    # pytest's 0700 base temp dir. mkdtemp under /tmp is reachable.
    base = Path(tempfile.mkdtemp(prefix="imagen-cli-"))
    try:
        migrate_twice(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def migrate_twice(tmp_path: Path) -> None:
    env = {"IMAGEN_HOME": str(tmp_path / "home")}
    env.pop("IMAGEN_WORKER_DATABASE_URL", None)
    first = cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("postgresql://") and "/imagen" in first.stdout
    assert f"applied {len(discover())} migration(s)" in first.stderr
    second = cli("migrate", env=env)
    assert second.returncode == 0 and "up to date" in second.stderr
    status = cli("embedded", "status", env=env)
    assert status.returncode == 0 and "running (pid" in status.stdout
    stop = cli("embedded", "stop", env=env)
    assert stop.returncode == 0 and "stopped the embedded Postgres" in stop.stderr
    after = cli("embedded", "status", env=env)
    assert after.returncode == 0 and "not running" in after.stdout


def test_bad_size_is_a_usage_error_naming_the_flag(tmp_path: Path) -> None:
    """--size nonsense exits 2 naming --size and an example."""
    r = cli("submit", "owl", "--size", "big", "--owner", "11111111-1111-4111-8111-111111111111")
    assert r.returncode == 2 and "argument --size: 'big' is not WIDTHxHEIGHT" in r.stderr


def test_submit_without_owner_says_how(tmp_path: Path) -> None:
    """No --owner and no IMAGEN_OWNER_USER_ID: exit 2 naming both."""
    env = {k: v for k, v in os.environ.items() if k != "IMAGEN_OWNER_USER_ID"}
    r = subprocess.run(
        [sys.executable, "-m", "imagen_actors", "submit", "owl"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "IMAGEN_OWNER_USER_ID" in r.stderr


def test_bad_config_file_exit_code(tmp_path: Path) -> None:
    """A broken config file exits 3 with the key path."""
    bad = tmp_path / "c.yaml"
    bad.write_text("worker: {lease_s: soon}\n")
    r = cli("status", "--config", str(bad))
    assert r.returncode == 3 and "worker.lease_s" in r.stderr


def test_unknown_command_is_usage_error() -> None:
    """argparse's usage error code for an unknown verb."""
    assert cli("teleport").returncode == 2


@pytest.mark.db
def test_demo_says_what_it_starts_and_how_to_stop_it() -> None:
    """The demo names the embedded Postgres it starts, and that it leaves it running and
    how to stop it; `embedded stop` then does."""
    base = Path(tempfile.mkdtemp(prefix="imagen-demo-"))
    env = {"IMAGEN_HOME": str(base / "home"), "IMAGEN_WORKER_DATABASE_URL": ""}
    try:
        r = cli("demo", "--jobs", "1", "--size", "64x64", env=env)
        assert r.returncode == 0, r.stderr
        assert "starting the embedded Postgres in" in r.stderr
        assert "stop it with: imagen-actors embedded stop" in r.stderr
        assert r.stdout.startswith("done ")
    finally:
        cli("embedded", "stop", env=env)
        shutil.rmtree(base, ignore_errors=True)
