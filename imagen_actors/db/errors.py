"""asyncpg's exceptions translated into the project's own, at the boundary (httpx's habit):
callers above ``db/`` never see an asyncpg type."""

from __future__ import annotations

import asyncpg

from imagen_actors.core.errors import (
    ConcurrencyError,
    ConstraintViolationError,
    DatabaseError,
    DatabaseUnavailableError,
    JobNotFoundError,
)


def translate(exc: BaseException) -> BaseException:
    """Map an asyncpg/asyncio failure to the project's own error, or return it unchanged."""
    if isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name in (
        "job_events_job_seq_unique",
    ):
        return ConcurrencyError(f"another writer advanced the job first ({exc.detail})")
    if isinstance(exc, asyncpg.SerializationError):
        # 40001 from imagen.archive_streams: a job of the batch moved since it was read.
        return ConcurrencyError(exc.message)
    if isinstance(exc, asyncpg.NoDataFoundError):
        # P0002 from our SQL functions (cancel_job, retry_job): "no job X of yours".
        return JobNotFoundError(exc.message)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return ConstraintViolationError(
            f"{exc.message} (constraint {exc.constraint_name or 'unnamed'})"
            + (f"; {exc.hint}" if getattr(exc, "hint", None) else ""),
            constraint=exc.constraint_name,
        )
    if isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.ConnectionDoesNotExistError
        | asyncpg.CannotConnectNowError
        | asyncpg.TooManyConnectionsError
        | asyncpg.AdminShutdownError
        | asyncpg.InterfaceError
        # A connection left mid-operation (e.g. by a cancelled call) refuses the next one.
        | asyncpg.InternalClientError,
    ):
        return DatabaseUnavailableError(f"database unavailable: {exc}")
    if isinstance(exc, asyncpg.ObjectNotInPrerequisiteStateError) and (
        "not currently accepting connections" in str(exc)
    ):
        # ALLOW_CONNECTIONS false (maintenance, a restore): the database is unavailable for
        # now, as when it is down; not our SQL's 55000 ("only a failed ... job").
        return DatabaseUnavailableError(f"database unavailable: {exc}")
    if isinstance(exc, asyncpg.PostgresError):
        return DatabaseError(f"{type(exc).__name__}: {exc}")
    return exc
