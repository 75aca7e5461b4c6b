"""The zero-config database: a private pgserver cluster under the user's data dir."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, Final

import trio

from imagen_actors.config.settings import data_home
from imagen_actors.core.errors import DatabaseUnavailableError

DATABASE: Final = "imagen"
log = logging.getLogger(__name__)


def pgdata_path() -> Path:
    return data_home() / "pgdata"


def start(pgdata: Path | None = None, *, cleanup: str | None = None) -> tuple[Any, str]:
    """Start (or reuse) the cluster; returns the server handle and the DSN of ``imagen``.

    Blocking (initdb + pg_ctl, about a second the first time): call it from a thread.
    ``cleanup=None`` leaves the server running for the next command; tests pass "delete".
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root shells, systemd system units)
        warnings.simplefilter("ignore", UserWarning)
        import pgserver  # imported lazily: it probes the runtime dir at import time

    pgdata = pgdata or pgdata_path()
    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode=cleanup)  # type: ignore[attr-defined]
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE};")
    except Exception as exc:  # pgserver raises CalledProcessError, TimeoutExpired, OSError
        raise DatabaseUnavailableError(
            f"could not start the embedded Postgres in {pgdata}: {exc}; its log is "
            f"{pgdata / 'log'}; set IMAGEN_WORKER_DATABASE_URL to use another server"
        ) from exc
    return server, str(server.get_uri(DATABASE))


async def start_async(pgdata: Path | None = None) -> str:
    _server, dsn = await trio.to_thread.run_sync(start, pgdata)
    log.info("embedded Postgres at %s (data in %s)", dsn, pgdata or pgdata_path())
    return dsn


def running(pgdata: Path | None = None) -> int | None:
    """The postmaster's pid when the cluster in ``pgdata`` is running, else None."""
    pid_file = (pgdata or pgdata_path()) / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def stop(pgdata: Path | None = None) -> None:
    """Stop the cluster (its data stays for the next start)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import pgserver

    try:
        server = pgserver.get_server(pgdata or pgdata_path(), cleanup_mode="stop")  # type: ignore[attr-defined]
        server.cleanup()
    except Exception as exc:  # pgserver raises CalledProcessError, TimeoutExpired, OSError
        raise DatabaseUnavailableError(
            f"could not stop the embedded Postgres in {pgdata or pgdata_path()}: {exc}"
        ) from exc
