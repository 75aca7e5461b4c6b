from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.badinput.door import Door
from tests.support.pg import Cluster


@pytest.fixture(scope="module")
def door_dsn(pg_cluster: Cluster) -> Iterator[str]:
    """One migrated database for a module's INSERT cases (each case checks its own counts)."""
    name, dsn = pg_cluster.new_database()
    yield dsn
    pg_cluster.drop(name)


@pytest.fixture(scope="module")
def door(door_dsn: str) -> Iterator[Door]:
    d = Door(door_dsn)
    yield d
    d.close()
