from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagen_actors.core import events as ev
from imagen_actors.core import fold


def generate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagen_actors", "generate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


@pytest.fixture
def no_db_env(tmp_path: Path) -> dict[str, str]:
    env = {"IMAGEN_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)}
    os.environ.pop("IMAGEN_WORKER_DATABASE_URL", None)
    return env


def test_generate_without_database_prints_only_the_path(
    no_db_env: dict[str, str], tmp_path: Path
) -> None:
    """No DSN: stdout is exactly the PNG path; the JSONL log replays to a done job."""
    r = generate(
        "a tiny owl",
        "--size",
        "96x64",
        "--seed",
        "7",
        "--style",
        "photo",
        "--out",
        str(tmp_path / "out"),
        env=no_db_env,
    )
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip())
    assert r.stdout.count("\n") == 1 and path.suffix == ".png"
    assert path.read_bytes()[:4] == b"\x89PNG" and path.name == "a-tiny-owl-7.png"
    assert path.with_suffix(".json").exists()
    assert "usage not recorded" in r.stderr and "seed 7 96x64" in r.stderr
    lines = (tmp_path / "out" / "imagen-events.jsonl").read_bytes().splitlines()
    events = [ev.decode(line) for line in lines]
    assert isinstance(events[0], ev.GenerateRequested)
    state = fold.replay(events)
    assert state.status == "done" and state.image_id is not None


def test_generate_backend_failure_exit_1(no_db_env: dict[str, str], tmp_path: Path) -> None:
    """A backend error exits 1 with the error on stderr and nothing on stdout."""
    r = generate("[fail:permanent] owl", "--size", "64x64", "--out", str(tmp_path), env=no_db_env)
    assert r.returncode == 1 and r.stdout == ""
    assert "injected permanent failure" in r.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--style", "neon"], 2, "argument --style: unknown style 'neon'; use one of blog-header"),
        (["--backend", "flux-dev"], 3, "unknown backend 'flux-dev' (configured: mock)"),
        (["--size", "huge"], 2, "argument --size: 'huge' is not WIDTHxHEIGHT"),
        (["--seed", "-4"], 2, "argument --seed: seed -4 is out of range"),
    ],
)
def test_generate_usage_errors(
    no_db_env: dict[str, str], tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    """Bad options exit 2 (an unconfigured backend: 3, a config error) with a message naming
    the option, before any event is written."""
    r = generate("owl", *args, "--out", str(tmp_path), env=no_db_env)
    assert r.returncode == code and message in r.stderr
    assert not (tmp_path / "imagen-events.jsonl").exists()


@pytest.mark.db
def test_generate_with_database_records_job_events(database_url: str, tmp_path: Path) -> None:
    """With a DSN, generate's job lands in imagen.jobs/job_events/images and usage."""
    from tests.support.roles import run_as

    r = generate(
        "db owl",
        "--size",
        "64x64",
        "--out",
        str(tmp_path),
        env={"IMAGEN_WORKER_DATABASE_URL": database_url, "IMAGEN_HOME": str(tmp_path / "h")},
    )
    assert r.returncode == 0, r.stderr
    rows = run_as(
        database_url,
        None,
        None,
        "SELECT j.status, count(e.*) AS n FROM imagen.jobs j "
        "JOIN imagen.job_events e ON e.job_id = j.id GROUP BY j.status",
    )
    assert rows == [{"status": "done", "n": 8}]
    usage = run_as(database_url, None, None, "SELECT count(*) AS n FROM mai.imagen_usage")
    assert usage == [{"n": 1}]
