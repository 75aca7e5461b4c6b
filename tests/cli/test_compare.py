from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image


def test_compare_keeps_going_past_a_failed_backend(tmp_path: Path) -> None:
    """Each backend gets a PNG or a failed tile; the contact sheet holds all of them."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "backends:\n  mock: {type: mock}\n  slow: {type: mock, latency_ms: 20}\n"
        "  broken: {type: mock, fail_rate: 1.0, fail_class: permanent}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "IMAGEN_WORKER_DATABASE_URL"}
    env["IMAGEN_HOME"] = str(tmp_path / "home")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagen_actors",
            "compare",
            "a tiny owl",
            "--backends",
            "mock,broken,slow",
            "--size",
            "128x96",
            "--seed",
            "5",
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    sheet = Path(r.stdout.strip())
    assert "2/3 backends succeeded" in r.stderr and "broken: failed: " in r.stderr
    with Image.open(sheet) as img:
        assert img.width > 3 * 300
    for name in ("mock", "slow"):
        found = list((tmp_path / "out").rglob(f"a-tiny-owl-5-{name}.png"))
        assert len(found) == 1 and found[0].with_suffix(".json").exists()


def test_compare_unknown_backend_is_a_config_error(tmp_path: Path) -> None:
    """An unknown instance in --backends exits 3 listing the configured ones."""
    env = {**os.environ, "IMAGEN_HOME": str(tmp_path)}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagen_actors",
            "compare",
            "owl",
            "--backends",
            "mock,nope",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert r.returncode == 3 and "unknown backend(s) nope (configured: mock)" in r.stderr


def test_compare_replicate_without_token_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A Replicate backend whose token variable is unset fails its own tile with one line
    ("rep: failed: not configured (...)"), no traceback, and the other backend still runs."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "backends:\n  mock: {type: mock}\n"
        "  rep: {type: replicate, model: black-forest-labs/flux-schnell,"
        " api_token_env: IMAGEN_TEST_UNSET_TOKEN}\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("IMAGEN_WORKER_DATABASE_URL", "IMAGEN_TEST_UNSET_TOKEN")
    }
    env["IMAGEN_HOME"] = str(tmp_path / "home")
    r = subprocess.run(
        [
            *(sys.executable, "-m", "imagen_actors", "compare", "a tiny owl"),
            *("--backends", "mock,rep", "--size", "64x64", "--seed", "5"),
            *("--config", str(cfg), "--out", str(tmp_path / "out")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("rep: ")]
    assert line.startswith("rep: failed: not configured (") and "IMAGEN_TEST_UNSET_TOKEN" in line
    assert "1/2 backends succeeded" in r.stderr
