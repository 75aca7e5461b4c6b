from __future__ import annotations

import pytest

from tests.chaos.campaign import FULL, SEED

_ran: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _ran:
        return  # collected but deselected (-m "not chaos"): nothing to reproduce
    mode = "full (IMAGEN_CHAOS_FULL=1)" if FULL else "bounded"
    terminalreporter.write_line(
        f"chaos campaign: {mode}, seed {SEED} (IMAGEN_CHAOS_SEED={SEED} repeats its choices)"
    )


@pytest.fixture(autouse=True)
def _announce_seed(request: pytest.FixtureRequest) -> None:
    # Printed per test, so a failure's captured output names the seed too.
    _ran.append(request.node.name)
    print(f"chaos seed {SEED} ({'full' if FULL else 'bounded'}) for {request.node.name}")
