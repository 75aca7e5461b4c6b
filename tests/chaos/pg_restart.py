"""A private embedded Postgres (pgserver) that a chaos test may stop and start at will.

The session's shared cluster must never be restarted under other tests, so the Postgres
scenario starts its own, in a ``/tmp`` directory the ``pgserver`` OS user can enter (as root,
pgserver runs initdb and the postmaster as that user; pytest's 0700 tmp dirs would lock it out).

Stop and start use pgserver's bundled ``pg_ctl`` on the same data directory, with the options
the postmaster was first started with (``postmaster.opts``), so the socket directory (and so
the DSN) stays the same across restarts.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

from imagen_actors.db import embedded
from tests.support.pg import admin, with_database


class RestartableCluster:
    def __init__(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="imagen-chaos-pg-"))
        self.pgdata = self._tmp / "pgdata"
        self._server: Any
        # cleanup=None: pgserver only knows the first postmaster, so stopping (whichever one
        # runs by then) and deleting are ours, in close().
        self._server, dsn = embedded.start(self.pgdata, cleanup=None)
        self.admin_dsn = with_database(dsn, "postgres")
        # "/path/postgres" "-D" "/pgdata" "-h" "" "-k" "/socket/dir": everything after -D.
        words = shlex.split((self.pgdata / "postmaster.opts").read_text())
        self._options = shlex.join(words[3:])
        self.restarts = 0

    def new_database(self, name: str = "imagen_chaos") -> str:
        """Blocking (plain asyncio inside): call it from a thread under Trio."""
        admin(self.admin_dsn, f"CREATE DATABASE {name}")
        return with_database(self.admin_dsn, name)

    def _pg_ctl(self, *args: str) -> None:
        from pgserver import _commands

        _commands.pg_ctl(list(args), pgdata=self.pgdata, user=self._server.system_user, timeout=60)

    def stop(self) -> None:
        """Fast shutdown: open sessions are terminated, in-flight transactions roll back."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self._pg_ctl("-w", "-o", self._options, "-l", str(self.pgdata / "log"), "start")
        self.restarts += 1

    def close(self) -> None:
        try:
            if (self.pgdata / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
