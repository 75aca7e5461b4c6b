"""The database bridge (db/bridge.py): what the Gateway relies on when Trio cancels a call
that is running on the asyncio loop thread, and when notifications arrive from there."""

from __future__ import annotations

import pytest
import trio

from imagen_actors.db.gateway import Gateway

pytestmark = pytest.mark.db

SLEEP = "SELECT pg_sleep(60)"


async def _running_sleeps(gw: Gateway) -> int:
    n: int = await gw._run(
        gw._pool.fetchval,
        "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'",
        SLEEP,
    )
    return n


async def _wait_until_sleeping(gw: Gateway) -> None:
    with trio.fail_after(30):
        while await _running_sleeps(gw) == 0:
            await trio.sleep(0.01)


async def test_cancelling_a_call_cancels_its_statement_on_the_server(gateway: Gateway) -> None:
    """A Trio cancellation reaches the statement: the call raises Cancelled long before the
    60 s sleep ends, only once the server has stopped it, and its connection is reused."""
    async with Gateway.open(gateway.dsn, application_name="test-sleeper", pool_size=1) as gw:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(gw.execute_sql, SLEEP)
                await _wait_until_sleeping(gateway)
                t0 = trio.current_time()
                scope.cancel()
        assert scope.cancelled_caught
        assert trio.current_time() - t0 < 30
        # Cancelled returns only after asyncpg had the server stop the statement.
        assert await _running_sleeps(gateway) == 0
        # The pool's single connection went back to it, usable.
        assert await gw.fetch_sql("SELECT 2 AS two") == [{"two": 2}]


async def test_a_shielded_call_runs_to_its_end_through_a_cancellation(gateway: Gateway) -> None:
    """The final writes of a shutdown run shielded: the cancel does not reach the loop."""
    with trio.CancelScope() as outer:
        outer.cancel()
        with trio.CancelScope(shield=True):
            assert await gateway.fetch_sql("SELECT 3 AS three FROM pg_sleep(0.2)") == [{"three": 3}]
        await trio.lowlevel.checkpoint()  # where the outer cancellation lands
    assert outer.cancelled_caught


async def test_notifications_from_the_loop_thread_wake_the_trio_side(gateway: Gateway) -> None:
    """NOTIFY arrives on the asyncio thread; next() returns on the Trio side."""
    async with gateway.listen("bridge_test") as notes:
        for i in range(50):
            await gateway.execute_sql(f"NOTIFY bridge_test, '{i}'")
        with trio.fail_after(30):
            await notes.next()
            while notes.received < 50:
                await trio.sleep(0.01)
        assert notes.last_payload == "49"
