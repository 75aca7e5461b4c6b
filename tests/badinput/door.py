"""INSERT into imagen.jobs the way the owner UI and the worker's roles do, from sync test
code, and report exactly what the caller sees: the new id, or the error's fields."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from tests.support.jobs import OWNER

BASE: dict[str, str] = {
    "owner_user_id": f"'{OWNER}'",
    "prompt": "'a tiny owl'",
    "backend": "'mock'",
    "width": "64",
    "height": "64",
}


@dataclass(frozen=True)
class Refusal:
    """The fields a client (asyncpg, PostgREST) gets back from a refused statement."""

    sqlstate: str
    message: str
    hint: str | None
    detail: str | None
    column: str | None
    constraint: str | None
    position: int | None  # 1-based character in the statement, when Postgres gives one


def insert_sql(values: dict[str, str]) -> str:
    return (
        f"INSERT INTO imagen.jobs ({', '.join(values)}) "
        f"VALUES ({', '.join(values.values())}) RETURNING id"
    )


class Door:
    """One asyncpg connection on a private asyncio loop (the tests here are sync)."""

    def __init__(self, dsn: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn: Any = self._loop.run_until_complete(asyncpg.connect(dsn))

    def close(self) -> None:
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()

    def insert(self, role: str, sql: str, *args: Any) -> uuid.UUID | Refusal:
        """Run one INSERT ... RETURNING id as ``role`` (``owner``: the migrating role;
        ``authenticated``: the UI with a JWT for OWNER; ``service_role``)."""
        return self._loop.run_until_complete(self._insert(role, sql, args))

    async def _insert(self, role: str, sql: str, args: tuple[Any, ...]) -> uuid.UUID | Refusal:
        try:
            async with self._conn.transaction():
                if role == "authenticated":
                    claims = json.dumps({"sub": str(OWNER), "role": role})
                    await self._conn.execute(
                        "SELECT set_config('request.jwt.claims', $1, true)", claims
                    )
                if role != "owner":
                    await self._conn.execute(f"SET LOCAL ROLE {role}")
                job_id: uuid.UUID = await self._conn.fetchval(sql, *args)
                return job_id
        except asyncpg.PostgresError as exc:
            position = getattr(exc, "position", None)
            return Refusal(
                sqlstate=exc.sqlstate,
                message=exc.message,
                hint=getattr(exc, "hint", None),
                detail=getattr(exc, "detail", None),
                column=getattr(exc, "column_name", None),
                constraint=getattr(exc, "constraint_name", None),
                position=int(position) if position else None,
            )

    def counts(self) -> tuple[int, int]:
        """(jobs, job_events): what a refused INSERT must leave unchanged."""
        row = self._loop.run_until_complete(
            self._conn.fetchrow(
                "SELECT (SELECT count(*) FROM imagen.jobs) AS jobs, "
                "(SELECT count(*) FROM imagen.job_events) AS events"
            )
        )
        return int(row["jobs"]), int(row["events"])

    def fetchrow(self, sql: str, *args: Any) -> dict[str, Any]:
        row = self._loop.run_until_complete(self._conn.fetchrow(sql, *args))
        return dict(row)
