"""Things a config or workflow path can name instead of a small text file, for the config and
workflow tests: each maker creates ``path`` and the case gives the words of its refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

Maker = Callable[[Path], None]
# Generous, and still far below what the slow paths took before the file rules (a
# billion-laughs file: minutes; a 100 MB file: 150 s; a FIFO: forever).
BOUND_S = 10.0


def laughs(levels: int = 9) -> str:
    """A "billion laughs" YAML document: 9 aliases of 9 aliases ... of a 9-item list."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


def hundred_mb(path: Path) -> None:
    """100 MB of comment lines: text the parser would happily chew on for minutes."""
    chunk = (b"# " + b"x" * 1021 + b"\n") * 1024  # 1 MiB
    with open(path, "wb") as f:
        for _ in range(100):
            f.write(chunk)


def symlink_loop(path: Path) -> None:
    other = path.with_name(path.name + ".other")
    other.symlink_to(path)
    path.symlink_to(other)


def param(maker: Maker, problem: str, id: str) -> Any:
    return pytest.param(maker, problem, id=id)


# Valid YAML and valid JSON, nested 10,000 deep.
NESTED = "[" * 10_000 + "]" * 10_000


def file_cases() -> list[Any]:
    """The refusals the config and workflow readers share."""
    return [
        param(lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256))),
              "is not UTF-8 text (byte 0x89 at offset 0); is this the right file?", "binary"),
        param(lambda p: p.write_bytes("name: caf\xe9\n".encode("latin-1")),
              "is not UTF-8 text (byte 0xe9 at offset 9); is this the right file? save it as "
              "UTF-8", "latin-1"),
        param(lambda p: p.write_bytes(b"{}\x00\x00"),
              "holds a NUL character at offset 2: it is a binary file, not text", "nul-bytes"),
        param(lambda p: p.mkdir(), "is a directory, not a regular file; point it at a regular "
              "file", "directory"),
        param(os.mkfifo, "is a FIFO (named pipe), not a regular file", "fifo"),
        param(lambda p: p.write_text(NESTED), "is nested deeper than 32 levels", "nested-10000"),
        param(hundred_mb, "is larger than the 1 MiB limit for this file (104857600 bytes or "
              "more); is this the right file?", "100-MB"),
        param(lambda p: p.symlink_to(p.with_name("nowhere")),
              "nowhere, which does not exist; fix or remove the link", "dangling-symlink"),
        param(symlink_loop, "is a symlink loop (it never reaches a file); fix or remove the "
              "link", "looping-symlink"),
    ]  # fmt: skip


async def within_bound(fn: Callable[[], object]) -> None:
    """Run ``fn`` in a thread, failing the test if it has not returned (or raised) in
    BOUND_S; a hung read (a FIFO) is abandoned rather than hanging the run."""
    with trio.fail_after(BOUND_S):
        await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


def cli(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``imagen-actors ARGS`` as a real process, killed after BOUND_S."""
    env = dict(os.environ)
    if home is not None:
        env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "imagen_actors", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=BOUND_S,
        check=False,
    )
