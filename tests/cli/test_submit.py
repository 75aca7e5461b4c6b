from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli.test_cli import cli

pytestmark = pytest.mark.db

OWNER = "11111111-1111-4111-8111-111111111111"


def config_file(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "imagen.yaml"
    doc = {
        "default_backend": "mock",
        "database": {"url": database_url},
        "output": {"directory": str(tmp_path / "out")},
        "storage": {"type": "local", "root": str(tmp_path / "objects")},
        "backends": {"mock": {"type": "mock", "latency_ms": 0}},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_submit_to_an_unknown_backend_exits_3_and_inserts_nothing(
    tmp_path: Path, database_url: str
) -> None:
    """A backend neither configured here nor offered by any worker is a config error (3)."""
    cfg = config_file(tmp_path, database_url)
    r = cli("submit", "a fox", "--backend", "nope", "--owner", OWNER, "--config", str(cfg))
    assert r.returncode == 3, r.stderr
    assert "unknown backend 'nope'" in r.stderr and "configured: mock" in r.stderr
    assert "Traceback" not in r.stderr


def test_submit_wait_says_when_no_worker_offers_the_backend(
    tmp_path: Path, database_url: str
) -> None:
    """--wait with no worker running says so after a few seconds instead of waiting silently."""
    cfg = config_file(tmp_path, database_url)
    argv = [sys.executable, "-m", "imagen_actors", "submit", "a fox", "--owner", OWNER]
    argv += ["--wait", "--config", str(cfg)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        lines = []
        try:
            for line in proc.stderr:
                lines.append(line)
                if "no worker offering backend 'mock'" in line:
                    break
            else:
                pytest.fail(
                    "submit --wait ended without saying no worker is there:\n" + "".join(lines)
                )
        finally:
            proc.kill()
    assert "imagen-actors worker" in lines[-1]


def test_output_into_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    """`imagen-actors backends | true`: the reader is gone; exit 0, no BrokenPipeError."""
    cfg = tmp_path / "imagen.yaml"
    cfg.write_text(yaml.safe_dump({"backends": {"mock": {"type": "mock"}}}))
    r = subprocess.run(
        [
            "bash",
            "-c",
            f'"$0" -m imagen_actors backends --config {cfg} | true; '
            'echo "rc=${PIPESTATUS[0]}" >&2',
            sys.executable,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "rc=0" in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr
