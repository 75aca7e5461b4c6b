"""Test databases: one migrated template per session, one clone per test.

Uses plain asyncio + asyncpg for admin work (sync fixtures), so it never touches the
package's gateway (whose asyncio loop runs in a thread of its own).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def with_user(dsn: str, user: str) -> str:
    """``dsn`` logging in as ``user`` (host, port, database and query kept; no password)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@contextmanager
def login_role(admin_dsn: str, dsn: str, member_of: str) -> Iterator[tuple[str, str]]:
    """A new login role granted ``member_of`` (roles are cluster-wide: a unique name, dropped
    after); yields (``dsn`` logging in as it, its password). Not a superuser, owns nothing.
    The config refuses inline passwords: pass it as PGPASSWORD (a trusting server ignores it)."""
    name = f"imagen_t_login_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    admin(
        admin_dsn,
        f"CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS "
        f"PASSWORD '{password}' IN ROLE {member_of}",
    )
    try:
        yield with_user(dsn, name), password
    finally:
        admin(admin_dsn, f"DROP ROLE IF EXISTS {name}")


def admin(dsn: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for sql in statements:
                await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


class Cluster:
    """A Postgres server for the test session: embedded pgserver, or the given URL."""

    def __init__(self) -> None:
        self._server: Any = None
        url = os.environ.get("IMAGEN_TEST_DATABASE_URL")
        if url:
            self.admin_dsn = url
        else:
            from imagen_actors.db import embedded

            self._tmp = tempfile.mkdtemp(prefix="imagen-test-pg-")
            self._server, dsn = embedded.start(Path(self._tmp) / "pgdata", cleanup="delete")
            self.admin_dsn = with_database(dsn, "postgres")
        self.template = f"imagen_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    def build_template(self) -> None:
        import trio

        from imagen_actors.db.gateway import Gateway
        from imagen_actors.db.migrations import migrate

        admin(self.admin_dsn, f"CREATE DATABASE {self.template}")

        async def run() -> None:
            async with Gateway.open(with_database(self.admin_dsn, self.template)) as gw:
                await migrate(gw)

        trio.run(run)

    def new_database(self) -> tuple[str, str]:
        name = f"imagen_t_{uuid.uuid4().hex[:12]}"
        admin(self.admin_dsn, f"CREATE DATABASE {name} TEMPLATE {self.template}")
        return name, with_database(self.admin_dsn, name)

    def empty_database(self) -> tuple[str, str]:
        name = f"imagen_e_{uuid.uuid4().hex[:12]}"
        admin(self.admin_dsn, f"CREATE DATABASE {name}")
        return name, with_database(self.admin_dsn, name)

    def drop(self, name: str) -> None:
        admin(self.admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def close(self) -> None:
        try:
            self.drop(self.template)
        finally:
            if self._server is not None:
                self._server.cleanup()
