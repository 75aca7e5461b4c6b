"""Browser tests: a real worker and the real dashboard as processes, driven by headless
Chromium (Debian's /usr/bin/chromium) through Playwright. Skipped, saying why, when either
is missing, so ./ops/test runs anywhere; .ci/run installs both."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("IMAGEN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).with_name("artifacts")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def chromium(database_url: str) -> Iterator[Any]:
    """Function-scoped, after the database: Playwright's sync driver keeps an asyncio loop
    running in this thread until it stops, and the database fixtures' teardown needs none."""
    # .ci/run sets IMAGEN_REQUIRE_BROWSER: there a missing browser fails instead of skipping.
    missing = pytest.fail if os.environ.get("IMAGEN_REQUIRE_BROWSER") else pytest.skip
    if not Path(CHROMIUM).exists():
        missing(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or run .ci/run)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright is not installed: pip install 'imagen-actors[browser]'")
    # trio_asyncio (imported by the package until 2026-12, still by bench/bridge.py) makes
    # new asyncio loops its own kind, which Playwright's sync driver cannot nest; a plain
    # asyncio policy for this thread, meanwhile.
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            yield browser
            browser.close()
    finally:
        asyncio.set_event_loop_policy(None)


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """Screenshots of this test, kept after it (tests/browser/artifacts/<test>/)."""
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"screenshots in {folder}")
    return folder


def start_dashboard(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``imagen-actors serve`` on a free loopback port; (process, URL) once it listens."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imagen_actors",
                "serve",
                "--config",
                str(config),
                "--bind",
                "127.0.0.1:0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for line in text.splitlines():
            if "dashboard on " in line:
                return proc, line.rsplit("dashboard on ", 1)[1].split()[0]
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}:\n{text}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"serve did not start in 60 s:\n{log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
