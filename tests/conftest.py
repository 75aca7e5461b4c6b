from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.pg import Cluster


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every test away from the real ~/.config and data dir and from a real DSN."""
    home = tmp_path_factory.mktemp("imagen-home")
    saved = {
        k: os.environ.get(k)
        for k in (
            "IMAGEN_HOME",
            "IMAGEN_CONFIG",
            "IMAGEN_WORKER_DATABASE_URL",
            "IMAGEN_WORKER_NAME",
        )
    }
    os.environ["IMAGEN_HOME"] = str(home)
    # No ~/.config/imagen.yaml under this HOME: every test starts from the defaults.
    os.environ["HOME"] = str(home)
    os.environ.pop("IMAGEN_CONFIG", None)
    os.environ.pop("IMAGEN_WORKER_DATABASE_URL", None)
    os.environ.pop("IMAGEN_WORKER_NAME", None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    cluster.build_template()
    yield cluster
    cluster.close()


@pytest.fixture
def database_url(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh, migrated database for this test (a clone of the session template)."""
    name, dsn = pg_cluster.new_database()
    yield dsn
    pg_cluster.drop(name)


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[object]:
    from imagen_actors.db.gateway import Gateway

    async with Gateway.open(database_url, application_name="test") as gw:
        yield gw


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMAGEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"
