"""The Postgres gateway: with its helpers in db/ (errors, listening), the only code that
imports asyncpg.

asyncpg runs on a plain asyncio loop in a thread of its own (``db.bridge``). Every public
method here is a Trio coroutine that crosses the bridge exactly once; a transition (lock,
fold, append events, write the projection, commit) is one crossing running one transaction.
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

import asyncpg
import attrs
import trio

from imagen_actors.core import events as ev
from imagen_actors.core.errors import (
    DatabaseError,
    DatabaseUnavailableError,
)
from imagen_actors.core.records import (
    CompletionRows,
    Decide,
    DecideFor,
    ImageRow,
    NewJob,
    Transition,
    UsageRow,
)
from imagen_actors.db.bridge import AsyncioThread
from imagen_actors.db.errors import translate
from imagen_actors.db.known_streams import KnownStreams
from imagen_actors.db.listening import CONNECT_TIMEOUT_S, close_listener, connect_listener
from imagen_actors.db.named_queries import NamedQueries
from imagen_actors.db.notifications import Notifications
from imagen_actors.db.sql import query
from imagen_actors.db.transactions import (
    advance,
    claim_next,
    event_from_record,
    init_connection,
    keep_session,
    lock_job,
    reserve_key,
)

T = TypeVar("T")

DEFAULT_STATEMENT_TIMEOUT_MS: Final = 15_000
# How often a claim also looks for jobs of backends nobody offers (the rarer claim path).
UNSERVED_EVERY_S: Final = 5.0
# What the driver raises; translated into the project's own errors (db/errors).
_DRIVER_ERRORS: Final = (
    asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError,
    TimeoutError,
)  # fmt: skip


class _UsageRefusedError(Exception):
    """The usage insert failed inside a completion: roll back and complete without it."""


@attrs.define
class Gateway(NamedQueries):
    """Owns the asyncpg pool. Open with ``async with Gateway.open(dsn, ...) as gw``."""

    _loop: AsyncioThread
    _pool: Any
    # The claims' own connection, whose prepared claim is planned once (plan_cache_mode
    # force_generic_plan): its custom plan, made again on every claim, was 0.5 ms of server
    # CPU against 0.18. Only there: the Reaper's time-window reads need their custom plans.
    _claims: Any
    dsn: str
    application_name: str
    _server_settings: dict[str, str]
    # When (trio clock) a claim last looked at the jobs of backends nobody offers.
    _unserved_at: float = -math.inf
    # The state of the jobs this worker last wrote, so a transition need not reload them.
    _known: KnownStreams = attrs.field(factory=KnownStreams)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        dsn: str,
        *,
        application_name: str = "imagen-actors",
        pool_size: int = 4,
        statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    ) -> AsyncIterator[Gateway]:
        settings = {
            "application_name": application_name[:63],
            "statement_timeout": str(statement_timeout_ms),
            "lock_timeout": str(statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(statement_timeout_ms * 2),
        }
        async with AsyncioThread.running() as loop:

            def create(min_size: int, max_size: int, **extra: str) -> Awaitable[Any]:
                return loop.call(
                    asyncpg.create_pool,
                    dsn,
                    min_size=min_size,
                    max_size=max_size,
                    server_settings={**settings, **extra},
                    init=init_connection,
                    reset=keep_session,
                    timeout=CONNECT_TIMEOUT_S,
                    # asyncpg arms a 300 s idle timer on every release and cancels it on the
                    # next acquire; the pool is small and long-lived, so it needs none (under
                    # trio-asyncio, which kept cancelled timers, it grew ~2.5 KiB per job).
                    max_inactive_connection_lifetime=0,
                )

            try:
                pool = await create(1, pool_size)
                # Connected on the first claim: a command that never claims opens none.
                claims = await create(0, 1, plan_cache_mode="force_generic_plan")
            except Exception as exc:
                # Exception, not BaseException: Cancelled and KeyboardInterrupt pass as they are.
                translated = translate(exc)
                if translated is exc:
                    raise
                raise translated from exc
            gw = cls(loop, pool, claims, dsn, application_name, settings)
            try:
                yield gw
            finally:
                with trio.move_on_after(5, shield=True):
                    await loop.call(claims.close)
                    await loop.call(pool.close)

    async def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One bridge crossing; asyncpg errors leave as the project's own."""
        try:
            result: T = await self._loop.call(fn, *args)
        except _DRIVER_ERRORS as exc:
            raise translate(exc) from exc
        return result

    # ---- transitions -------------------------------------------------------------

    async def transition(self, job_id: uuid.UUID, decide: Decide) -> Transition:
        """Lock the job, fold ``decide``'s events onto its replayed state, append, commit."""

        async def body() -> Transition:
            async with self._pool.acquire() as conn, conn.transaction():
                t = await advance(conn, job_id, await lock_job(conn, job_id, self._known), decide)
            self._known.committed(t)
            return t

        return await self._run(body)

    async def claim(
        self,
        decide: Decide,
        *,
        backends: Sequence[str] | None = None,
        absent_after_s: float = 600.0,
        unserved_grace_s: float = 600.0,
        unserved_every_s: float = UNSERVED_EVERY_S,
    ) -> Transition | None:
        """Claim the oldest claimable pending job (SKIP LOCKED); None when there is none.

        With ``backends``, only jobs for those backends. At most every ``unserved_every_s``
        a rarer path first fails, each in its own claim transaction, the jobs of backends no
        worker seen in ``absent_after_s`` offers once they waited ``unserved_grace_s``
        (``dc.fail_unserved``). An unreadable job is failed too (``claim_next``).
        """
        offered = None if backends is None else list(backends)
        if offered is not None and trio.current_time() - self._unserved_at >= unserved_every_s:
            self._unserved_at = trio.current_time()
            while True:
                failed = await self._claim_next(
                    decide, offered, absent_after_s, unserved_grace_s, unserved=True
                )
                if failed is None or not failed.events:
                    break

        while True:
            t = await self._claim_next(decide, offered, absent_after_s, unserved_grace_s)
            if t is None or t.state.status == "running":
                return t

    async def _claim_next(
        self,
        decide: Decide,
        offered: list[str] | None,
        absent_after_s: float,
        grace_s: float,
        *,
        unserved: bool = False,
    ) -> Transition | None:
        """One claim transaction: a job claimed, or a poisoned (or unserved) one failed."""

        async def body() -> Transition | None:
            async with self._claims.acquire() as conn, conn.transaction():
                t = await claim_next(
                    conn, decide, offered, absent_after_s, grace_s, unserved=unserved
                )
            if t is not None:
                self._known.committed(t)
            return t

        return await self._run(body)

    async def insert_and_transition(self, job: NewJob, decide: Decide) -> Transition:
        """INSERT a job and advance it in one transaction (``generate`` with a database)."""

        async def body() -> Transition:
            async with self._pool.acquire() as conn, conn.transaction():
                job_id = await conn.fetchval(query("insert_job"), *job.columns())
                t = await advance(conn, job_id, await lock_job(conn, job_id), decide)
            self._known.committed(t)
            return t

        return await self._run(body)

    async def transition_reserving_key(
        self, job_id: uuid.UUID, decide: Decide, bucket: str, candidates: Sequence[str]
    ) -> tuple[Transition, tuple[str, uuid.UUID]]:
        """``transition``, and in the same transaction reserve the first of ``candidates``
        this job can hold in ``bucket``: (key, owner) as ``transactions.reserve_key`` gives."""

        async def body() -> tuple[Transition, tuple[str, uuid.UUID]]:
            async with self._pool.acquire() as conn, conn.transaction():
                t = await advance(conn, job_id, await lock_job(conn, job_id, self._known), decide)
                key = await reserve_key(conn, bucket, candidates, job_id)
            self._known.committed(t)
            return t, key

        return await self._run(body)

    async def store_image_and_transition(
        self,
        image: ImageRow,
        decide: DecideFor[CompletionRows],
        usage: UsageRow | None = None,
    ) -> Transition:
        """Insert imagen.images (idempotent on job_id) and, with ``usage``, its
        mai.imagen_usage row (idempotent on job_id too), and complete the job: one
        transaction, so a done job has its usage row. Should the usage table refuse the row
        (a constraint, a trigger), the completion runs again without it and records
        ``UsageFailed``: bookkeeping never fails a job."""

        async def body(usage: UsageRow | None, usage_error: str | None) -> Transition:
            async with self._pool.acquire() as conn, conn.transaction():
                locked = await lock_job(conn, image.job_id, self._known)
                # If decide refuses (lease lost), the rollback takes the rows with it.
                image_id = await conn.fetchval(query("upsert_image"), *image.columns())
                usage_id = None
                if usage is not None:
                    try:
                        usage_id = await conn.fetchval(query("insert_usage"), *usage.columns())
                    except asyncpg.PostgresError as exc:
                        if isinstance(translate(exc), DatabaseUnavailableError):
                            raise
                        # Aborts this transaction; the caller completes without the row.
                        raise _UsageRefusedError(f"{type(exc).__name__}: {exc}") from exc
                inserted = CompletionRows(image_id, usage_id, usage_error)
                t = await advance(conn, image.job_id, locked, decide(inserted))
            self._known.committed(t)
            return t

        try:
            return await self._run(body, usage, None)
        except _UsageRefusedError as refused:
            return await self._run(body, None, str(refused))

    # ---- reads and single statements --------------------------------------------

    async def load_events(self, job_id: uuid.UUID) -> list[ev.AnyEvent]:
        async def body() -> list[ev.AnyEvent]:
            rows = await self._pool.fetch(query("load_events"), job_id)
            return [event_from_record(job_id, r) for r in rows]

        return await self._run(body)

    async def events_after(self, job_id: uuid.UUID, seq: int) -> list[tuple[int, ev.AnyEvent]]:
        async def body() -> list[tuple[int, ev.AnyEvent]]:
            rows = await self._pool.fetch(query("events_after"), job_id, seq)
            return [(r["seq"], event_from_record(job_id, r)) for r in rows]

        return await self._run(body)

    async def fetch(self, name: str, *args: Any) -> list[dict[str, Any]]:
        async def body() -> list[dict[str, Any]]:
            return [dict(r) for r in await self._pool.fetch(query(name), *args)]

        return await self._run(body)

    async def fetchrow(self, name: str, *args: Any) -> dict[str, Any] | None:
        async def body() -> dict[str, Any] | None:
            row = await self._pool.fetchrow(query(name), *args)
            return None if row is None else dict(row)

        return await self._run(body)

    async def fetchval(self, name: str, *args: Any) -> Any:
        return await self._run(self._pool.fetchval, query(name), *args)

    async def fetch_sql(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """For SQL kept as data elsewhere (shipped views, audit recipes); never user text."""

        async def body() -> list[dict[str, Any]]:
            return [dict(r) for r in await self._pool.fetch(sql, *args)]

        return await self._run(body)

    async def execute_sql(self, sql: str, *args: Any) -> str:
        result: str = await self._run(self._pool.execute, sql, *args)
        return result

    # ---- migrations ---------------------------------------------------------------

    async def apply_migrations(
        self,
        plan: Callable[[dict[str, str]], Sequence[tuple[str, str, str]]],
        lock_key: int,
    ) -> list[str]:
        """Under an advisory lock, ask ``plan(applied)`` what to run; each file in its own
        transaction, recorded with its checksum."""

        async def body() -> list[str]:
            async with self._pool.acquire() as conn:
                await conn.execute("SELECT pg_advisory_lock($1)", lock_key)
                try:
                    await conn.execute(query("migrations_table"))
                    applied = {
                        r["name"]: r["checksum"]
                        for r in await conn.fetch(query("applied_migrations"))
                    }
                    done: list[str] = []
                    for name, sql, checksum in plan(applied):
                        async with conn.transaction():
                            await conn.execute(sql)
                            await conn.execute(query("record_migration"), name, checksum)
                        done.append(name)
                    return done
                finally:
                    await conn.execute("SELECT pg_advisory_unlock($1)", lock_key)

        return await self._run(body)

    # ---- LISTEN -------------------------------------------------------------------

    @asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[Notifications]:
        """A dedicated connection LISTENing on ``channel``, its notifications coalesced.

        When the connection dies, ``Notifications.next`` raises ``ListenerClosedError``: the
        caller reconnects.
        """
        notes = Notifications()
        conn = await self._run(connect_listener, self.dsn, self._server_settings, channel, notes)
        try:
            yield notes
        finally:
            notes.close()
            with trio.move_on_after(3, shield=True):
                # A connection that is already gone has nothing left to release.
                with contextlib.suppress(DatabaseError):
                    await self._run(close_listener, conn)

    async def ping(self) -> None:
        await self._run(self._pool.fetchval, "SELECT 1")
