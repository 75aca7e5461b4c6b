"""matplotlib is the optional ``plot`` extra: without it ``audit --plot`` says how to get it.

The missing library is simulated with ``sys.modules['matplotlib'] = None`` (an import of it
then raises ImportError), which patches the library's presence, not our code.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagen_actors.cli import exitcodes
from imagen_actors.cli.main import main
from imagen_actors.cli.reports import audit as ar
from imagen_actors.core.errors import UsageError

INSTALL_HINT = "pip install 'imagen-actors[plot]'"


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


@pytest.mark.parametrize("report", ["latency", "throughput"])
def test_audit_plot_without_matplotlib_names_the_extra(
    report: str,
    no_matplotlib: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Exit 2 with the pip command, before any query: the DSN points at a closed port, so
    reaching the database would exit 4 with a database error instead."""
    monkeypatch.setenv("IMAGEN_WORKER_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/imagen")
    png = tmp_path / "chart.png"
    rc = main(["audit", report, "--plot", str(png)])
    err = capsys.readouterr().err
    assert rc == exitcodes.USAGE, err
    assert INSTALL_HINT in err and "--plot needs matplotlib" in err
    assert not png.exists()


def test_plot_functions_without_matplotlib_raise_the_same_hint(
    no_matplotlib: None, tmp_path: Path
) -> None:
    row = ar.ThroughputRow(hour=datetime(2026, 1, 1, tzinfo=UTC), outcome="done", jobs=1)
    with pytest.raises(UsageError, match=r"imagen-actors\[plot\]"):
        ar.plot_throughput([row], tmp_path / "t.png")
    with pytest.raises(UsageError, match=r"imagen-actors\[plot\]"):
        ar.plot_latency([], tmp_path / "l.png")
    assert not (tmp_path / "t.png").exists()
