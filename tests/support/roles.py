"""Run SQL as a Supabase-style API role with JWT claims, on a plain asyncpg connection."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg


def run_as(
    dsn: str, user: uuid.UUID | None, role: str | None, sql: str, *args: Any
) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction():
                if user is not None:
                    claims = json.dumps({"sub": str(user), "role": role or "authenticated"})
                    await conn.execute("SELECT set_config('request.jwt.claims', $1, true)", claims)
                if role:
                    await conn.execute(f"SET LOCAL ROLE {role}")
                return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(go())
