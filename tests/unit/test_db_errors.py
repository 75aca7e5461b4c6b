from __future__ import annotations

import asyncpg

from imagen_actors.core.errors import DatabaseError, DatabaseUnavailableError
from imagen_actors.db.errors import translate


def test_a_database_closed_to_connections_is_unavailable_not_a_bug() -> None:
    """ALLOW_CONNECTIONS false (maintenance) reads as an outage, so actors ride it out
    rather than crash (which /readyz would report for 30 s); our own 55000 stays an error."""
    closed = asyncpg.ObjectNotInPrerequisiteStateError(
        'database "imagen" is not currently accepting connections'
    )
    assert isinstance(translate(closed), DatabaseUnavailableError)
    ours = asyncpg.ObjectNotInPrerequisiteStateError(
        "job 1 is done: only a failed or cancelled job can be retried"
    )
    translated = translate(ours)
    assert isinstance(translated, DatabaseError)
    assert not isinstance(translated, DatabaseUnavailableError)
