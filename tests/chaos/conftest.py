from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.chaos.campaign import FULL, SEED
from tests.chaos.pg_restart import RestartableCluster

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


@pytest.fixture
def cluster() -> Iterator[RestartableCluster]:
    """A private embedded Postgres the test may stop and start (never a shared server)."""
    if os.environ.get("IMAGEN_TEST_DATABASE_URL"):
        pytest.skip(
            "IMAGEN_TEST_DATABASE_URL is set: this scenario restarts its Postgres, so it runs "
            "only on its own embedded cluster (unset the variable to run it)"
        )
    c = RestartableCluster()
    yield c
    c.close()
