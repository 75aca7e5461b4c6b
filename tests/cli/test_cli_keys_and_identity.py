"""Each CLI run has its own worker identity; without a database keys are still never reused."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import trio
import yaml

from imagen_actors.config import settings as config
from imagen_actors.db.gateway import Gateway
from imagen_actors.worker.identity import cli_run_id, worker_id
from tests.support.worker import make_config, running_worker


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagen_actors", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def no_db_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "IMAGEN_WORKER_DATABASE_URL"}
    env["IMAGEN_HOME"] = str(tmp_path / "home")
    return env


def test_a_cli_run_never_shares_the_daemons_worker_id() -> None:
    """generate's identity differs from the daemon's on this host and from every other run."""
    cfg = config.Config()
    daemon = worker_id(cfg)
    runs = {cli_run_id(cfg, "generate") for _ in range(50)}
    assert daemon not in runs and len(runs) == 50
    assert all(r.startswith(daemon + ":generate-") and len(r) <= 63 for r in runs)


def test_two_generates_without_a_database_keep_both_objects(tmp_path: Path) -> None:
    """Same prompt, seed and day twice, no database: the second run takes its own key, so
    the first object is not overwritten and each sidecar's sha256 matches its object."""
    env = no_db_env(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "backends": {"mock": {"type": "mock"}},
                "storage": {"type": "local", "root": str(tmp_path / "objects")},
            }
        )
    )
    paths = []
    for n in range(2):
        r = run(
            "generate",
            "a twin owl",
            "--seed",
            "3",
            "--config",
            str(cfg),
            "--style",
            "photo" if n else "watercolor",
            "--out",
            str(tmp_path / f"out{n}"),
            env=env,
        )
        assert r.returncode == 0, r.stderr
        paths.append(Path(r.stdout.strip()))
    objects = sorted((tmp_path / "objects").rglob("*.png"))
    assert len(objects) == 2, objects
    for png in paths:
        meta = json.loads(png.with_suffix(".json").read_text())
        stored = tmp_path / "objects" / meta["bucket"] / meta["storage_path"]
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == meta["sha256"]
    keys = [
        msgspec.json.decode(line)
        for line in (tmp_path / "home" / "storage-keys.jsonl").read_bytes().splitlines()
    ]
    assert len({k[1] for k in keys}) == 2 and len({k[2] for k in keys}) == 2


@pytest.mark.db
async def test_a_worker_starting_during_generate_leaves_its_job_alone(
    tmp_path: Path, database_url: str
) -> None:
    """generate with a database, a slow backend, and a worker of the same name starting
    meanwhile: the worker's start-up recovery does not take the CLI's job; generate ends 0."""

    cfg_path = tmp_path / "imagen-cli.yaml"
    doc = {
        "database": {"url": database_url},
        "output": {"directory": str(tmp_path / "out")},
        "storage": {"type": "local", "root": str(tmp_path / "objects")},
        "worker": {"name": "t1"},
        "backends": {"mock": {"type": "mock", "latency_ms": 6000}},
    }
    cfg_path.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "IMAGEN_HOME": str(tmp_path / "home")}
    env.pop("IMAGEN_WORKER_NAME", None)
    argv = [sys.executable, "-m", "imagen_actors", "generate", "a patient owl"]
    argv += ["--owner", "11111111-1111-4111-8111-111111111111", "--config", str(cfg_path)]
    done: list[subprocess.CompletedProcess[bytes]] = []

    async def generate() -> None:
        done.append(
            await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False, env=env
            )
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(generate)
        async with Gateway.open(database_url) as gw:
            with trio.fail_after(30):
                while not await gw.fetch_sql(
                    "SELECT 1 FROM imagen.jobs WHERE status = 'running' AND worker_id LIKE $1",
                    f"{worker_id(config.load(cfg_path))}%",
                ):
                    await trio.sleep(0.05)
        # The CLI's job is running now: a worker of the same name starts and recovers what
        # its own id holds.
        async with running_worker(make_config(tmp_path, database_url, name="t1")):
            with trio.fail_after(60):
                while not done:
                    await trio.sleep(0.05)
    (result,) = done
    assert result.returncode == 0, result.stderr.decode()
    assert Path(result.stdout.decode().strip()).exists()
