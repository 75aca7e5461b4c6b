"""The LISTEN connection's asyncpg side: a connection class that coalesces notifications
where they arrive, and opening and closing it on the database's loop thread (``db.bridge``).
``Gateway.listen`` owns its lifetime."""

from __future__ import annotations

from typing import Any, Final

import asyncpg

from imagen_actors.db.notifications import Notifications

CONNECT_TIMEOUT_S: Final = 10.0


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _CoalescingConnection(asyncpg.Connection):  # type: ignore[misc]
    """asyncpg schedules an asyncio handle per notification for each listener; this hands
    each one straight to ``Notifications.notify`` (an O(1) flag) instead."""

    notifications: Notifications | None = None

    def _process_notification(self, pid: int, channel: str, payload: str) -> None:
        if self.notifications is not None:
            self.notifications.notify(payload)


async def connect_listener(
    dsn: str, settings: dict[str, str], channel: str, notes: Notifications
) -> Any:
    """A dedicated connection LISTENing on ``channel`` into ``notes``; its loss closes them."""
    conn = await asyncpg.connect(
        dsn,
        server_settings={**settings, "statement_timeout": "0"},
        timeout=CONNECT_TIMEOUT_S,
        connection_class=_CoalescingConnection,
    )
    try:
        conn.notifications = notes
        conn.add_termination_listener(lambda _conn: notes.close())
        await conn.execute(f"LISTEN {_quote_ident(channel)}")
    except BaseException:
        # A connection that could not LISTEN would otherwise stay open, unowned.
        conn.terminate()
        raise
    return conn


async def close_listener(conn: Any) -> None:
    if not conn.is_closed():
        await conn.close(timeout=2)
