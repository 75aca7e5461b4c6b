"""`config check` refuses what a worker start would refuse, naming the file (issue 15 item 13).

It used to build only the backends, so Supabase storage with SUPABASE_URL unset was "ok"
until the worker started; and errors raised where a block is built (a backend, the store)
did not say which config file they were about.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagen_actors.cli import exitcodes
from imagen_actors.cli.main import main
from imagen_actors.core.errors import ConfigError
from imagen_actors.worker.runtime import open_runtime
from tests.support.worker import make_config

SUPABASE = "storage: {type: supabase}\n"


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["config", "check", "--config", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "storage.url_env names $SUPABASE_URL, which is not set"),
        ({"SUPABASE_URL": "https://x.supabase.co"},
         "storage.key_env names $SUPABASE_SERVICE_KEY, which is not set"),
        ({"SUPABASE_URL": "https://x.supabase.co", "SUPABASE_SERVICE_KEY": " "},
         "SUPABASE_SERVICE_KEY is set but empty"),
        ({"SUPABASE_URL": "", "SUPABASE_SERVICE_KEY": "k"}, "SUPABASE_URL is set but empty"),
    ],
)  # fmt: skip
def test_supabase_storage_without_its_variables_is_not_ok(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    message: str,
) -> None:
    """Exit 3 naming the unset or empty variable and the file."""
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_SERVICE_KEY", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    path = tmp_path / "imagen.yaml"
    path.write_text(SUPABASE)
    code, out, err = check(path, capsys)
    assert code == exitcodes.CONFIG and out == ""
    assert message in err and f"(in {path})" in err


def test_supabase_storage_with_its_variables_is_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPABASE_URL", "https://x.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", "sb_secret_x")
    path = tmp_path / "imagen.yaml"
    path.write_text(SUPABASE)
    code, out, err = check(path, capsys)
    # Configured right; the server itself is not reachable from here: a warning, not a fault.
    assert code == exitcodes.OK
    assert err.startswith("imagen-actors: warning: storage: cannot reach"), err
    assert out.strip() == f"{path}: ok (1 backends: mock; storage: supabase)"


def test_backend_errors_name_the_file_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An adapter's own error (raised without the file) ends with (in FILE), exactly once."""
    path = tmp_path / "imagen.yaml"
    path.write_text("backends:\n  mock: {type: mock}\n  x: {type: replicate}\n")
    code, _out, err = check(path, capsys)
    assert code == exitcodes.CONFIG
    assert "backends.x.model is required" in err
    assert err.count(f"(in {path})") == 1


async def test_worker_start_names_the_file_for_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker refuses the same config before touching the database, naming the file."""
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    cfg = make_config(
        tmp_path, "postgresql://nobody@127.0.0.1:1/none", storage={"type": "supabase"}
    )
    with pytest.raises(ConfigError, match=r"\$SUPABASE_URL, which is not set.*\(in .*imagen-t1"):
        async with open_runtime(cfg):
            pass
