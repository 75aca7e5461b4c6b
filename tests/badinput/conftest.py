from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def bad_path(tmp_path: Path) -> Iterator[Path]:
    """Where a bad-file case (badfiles.file_cases) puts its file; a 100 MB one is removed at
    once rather than kept with tmp_path."""
    path = tmp_path / "bad"
    yield path
    if path.is_file() and not path.is_symlink():
        path.unlink()
