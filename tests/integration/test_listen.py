from __future__ import annotations

import pytest
import trio

from imagen_actors.core.errors import DatabaseError
from imagen_actors.db.gateway import Gateway

pytestmark = pytest.mark.db

COUNT_LISTEN_CONNECTIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name = $1 AND backend_type = 'client backend'
"""


async def test_a_listen_that_fails_closes_its_connection(gateway: Gateway) -> None:
    """When LISTEN itself is refused, the dedicated connection is closed, not left open."""
    before = (await gateway.fetch_sql(COUNT_LISTEN_CONNECTIONS, gateway.application_name))[0]
    for _ in range(3):
        # A zero-length identifier: Postgres refuses the LISTEN statement itself.
        with pytest.raises(DatabaseError, match="zero-length"):
            async with gateway.listen(""):
                pytest.fail("LISTEN on an empty channel name should not succeed")
    # A backend leaves pg_stat_activity a moment after its client closed the socket.
    with trio.fail_after(10):
        while True:
            rows = await gateway.fetch_sql(COUNT_LISTEN_CONNECTIONS, gateway.application_name)
            if rows[0]["count"] <= before["count"]:
                break
            await trio.sleep(0.05)
