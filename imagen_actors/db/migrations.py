"""Ordered SQL migrations from ``schema/``: applied once each, checksummed, under a lock.

``migrate`` applies them (run by the schema owner); ``check_current`` is the worker's
read-only check that they were, so the worker's role needs no CREATE privilege.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import attrs

from imagen_actors.config.bundled import schema_dir
from imagen_actors.core.errors import MigrationError
from imagen_actors.db.gateway import Gateway

_NAME: Final = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")
# pg_advisory_lock key shared by every imagen-actors process ("imagen" in ASCII).
LOCK_KEY: Final = 0x696D6167656E


@attrs.frozen
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def discover(folder: Path | None = None) -> list[Migration]:
    folder = folder or schema_dir()
    files = sorted(p for p in folder.iterdir() if p.suffix == ".sql")
    bad = [p.name for p in files if not _NAME.match(p.name)]
    if bad:
        raise MigrationError(
            f"migration file names must look like 0001_name.sql; rename {', '.join(bad)}"
        )
    return [Migration(p.name, p.read_text(encoding="utf-8")) for p in files]


def plan(migrations: Sequence[Migration], applied: dict[str, str]) -> list[Migration]:
    """What to apply given {name: checksum} already applied. Pure."""
    known = {m.name for m in migrations}
    for m in migrations:
        recorded = applied.get(m.name)
        if recorded is not None and recorded != m.checksum:
            raise MigrationError(
                f"migration {m.name} was changed after it was applied "
                f"(recorded sha256 {recorded[:12]}, file {m.checksum[:12]}); "
                "applied migrations are immutable: restore the file and add a new one"
            )
    unknown = sorted(set(applied) - known)
    if unknown:
        raise MigrationError(
            f"the database has migrations this version does not ship ({', '.join(unknown)}); "
            "upgrade imagen-actors before running it against this database"
        )
    return [m for m in migrations if m.name not in applied]


async def migrate(gateway: Gateway, folder: Path | None = None) -> list[str]:
    """Apply what is missing; returns the names applied (empty when up to date)."""
    migrations = discover(folder)

    def planner(applied: dict[str, str]) -> list[tuple[str, str, str]]:
        return [(m.name, m.sql, m.checksum) for m in plan(migrations, applied)]

    return await gateway.apply_migrations(planner, LOCK_KEY)


async def check_current(gateway: Gateway, folder: Path | None = None) -> None:
    """Raise MigrationError naming ``imagen-actors migrate`` unless every bundled migration is
    applied. Reads only: the worker's role may not create anything (docs/setup-worker.md)."""
    migrations = discover(folder)
    where = await gateway.fetchrow("migrations_readable")
    assert where is not None  # the query always returns its one row
    if not where["present"]:
        raise MigrationError(
            "the database has no imagen schema yet (imagen.schema_migrations is missing): "
            "run `imagen-actors migrate` as the schema owner (on Supabase: postgres), "
            "then start again"
        )
    if not where["readable"]:
        raise MigrationError(
            f"role {where['role']} may not read imagen.schema_migrations: run "
            "`imagen-actors migrate` as the schema owner (it grants the imagen_worker role) "
            f"and connect as a login granted imagen_worker (GRANT imagen_worker TO {where['role']})"
        )
    applied = {r["name"]: r["checksum"] for r in await gateway.fetch("applied_migrations")}
    missing = plan(migrations, applied)
    if missing:
        names = ", ".join(m.name for m in missing)
        raise MigrationError(
            f"the database is {len(missing)} migration(s) behind this version ({names}): "
            "run `imagen-actors migrate` as the schema owner (on Supabase: postgres), "
            "then start again"
        )
