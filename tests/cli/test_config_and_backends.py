from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "REPLICATE_API_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "imagen_actors", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**base, **(env or {})},
    )


def test_config_init_writes_a_sample_that_checks_clean(tmp_path: Path) -> None:
    """config init writes the six sample backends; config check accepts it; no overwrite."""
    path = tmp_path / "imagen.yaml"
    r = cli("config", "init", "--path", str(path))
    assert r.returncode == 0 and r.stdout.strip() == str(path)
    text = path.read_text()
    for name in (
        "mock:",
        "flux-schnell-local:",
        "flux2-klein-local:",
        "sd35-medium-local:",
        "flux-schnell-replicate:",
        "flux-dev-replicate:",
    ):
        assert name in text
    # The preflight runs too: the sample's Replicate backends need their token variable
    # (a configuration fault), its ComfyUI ones being down is only a warning.
    checked = cli("config", "check", "--config", str(path))
    assert checked.returncode == 3 and "set REPLICATE_API_TOKEN" in checked.stderr
    assert "warning: backend flux-schnell-local: unreachable" in checked.stderr
    again = cli("config", "init", "--path", str(path))
    assert again.returncode == 3 and "--force" in again.stderr


def test_config_check_names_the_key_path(tmp_path: Path) -> None:
    """An adapter-level mistake is reported with backends.<name>.<key>."""
    path = tmp_path / "bad.yaml"
    path.write_text("backends:\n  mock: {type: mock}\n  comfy: {type: comfyui, urll: x}\n")
    r = cli("config", "check", "--config", str(path))
    assert r.returncode == 3 and "backends.comfy" in r.stderr and "urll" in r.stderr


def test_backends_reports_each_status(tmp_path: Path) -> None:
    """ok for mock, 'not configured (set VAR)' for Replicate, 'unreachable (...)' for ComfyUI."""
    path = tmp_path / "imagen.yaml"
    path.write_text(
        "backends:\n"
        "  mock: {type: mock}\n"
        "  rep: {type: replicate, model: black-forest-labs/flux-schnell}\n"
        "  comfy: {type: comfyui, url: 'http://127.0.0.1:9'}\n"
    )
    r = cli("backends", "--json", "--config", str(path))
    assert r.returncode == 1, r.stderr  # not every instance is ok
    status = {row["name"]: row["status"] for row in json.loads(r.stdout)}
    assert status["mock"] == "ok"
    assert status["rep"] == "not configured (set REPLICATE_API_TOKEN)"
    assert status["comfy"].startswith("unreachable (http://127.0.0.1:9")


def test_backends_exits_0_only_when_every_instance_is_ok(tmp_path: Path) -> None:
    path = tmp_path / "imagen.yaml"
    path.write_text("backends:\n  mock: {type: mock}\n  other: {type: mock}\n")
    r = cli("backends", "--config", str(path))
    assert r.returncode == 0, r.stderr
    assert "mock" in r.stdout and "other" in r.stdout


def test_config_check_runs_the_storage_preflight(tmp_path: Path) -> None:
    """Supabase storage with its variables unset fails config check (exit 3) naming the
    variable, instead of passing; an unwritable local directory fails it too."""
    path = tmp_path / "imagen.yaml"
    path.write_text("backends:\n  mock: {type: mock}\nstorage: {type: supabase}\n")
    env = {"SUPABASE_URL": "", "SUPABASE_SERVICE_KEY": ""}
    r = cli("config", "check", "--config", str(path), env=env)
    assert r.returncode == 3 and "storage: SUPABASE_URL" in r.stderr, r.stderr
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the storage directory should be")
    path.write_text(
        f"backends:\n  mock: {{type: mock}}\nstorage: {{type: local, root: '{blocked}'}}\n"
    )
    r = cli("config", "check", "--config", str(path))
    assert r.returncode == 3 and f"cannot write to {blocked}" in r.stderr, r.stderr
