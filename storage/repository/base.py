"""What every part of the repository shares: the session factory, the dialect's upsert, two checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import CursorResult, Executable, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.database import Database
from storage.errors import DraftNotFound, StorageError
from storage.models import Draft

# Both dialects' INSERT … ON CONFLICT, which plain SQL lacks: one statement, so concurrent upserts
# cannot create a second row.
_UPSERT_INSERTS: dict[str, Callable[..., Any]] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class RepositoryBase:
    """The state every concern of the repository works with; each use case is one session."""

    def __init__(self, database: Database) -> None:
        dialect = database.engine.dialect.name
        if dialect not in _UPSERT_INSERTS:
            raise StorageError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")
        self._sessions = database.sessions
        self._insert = _UPSERT_INSERTS[dialect]


async def rowcount(session: AsyncSession, statement: Executable) -> int:
    """Run an UPDATE or DELETE and say how many rows it touched."""
    result = cast(CursorResult[Any], await session.execute(statement))
    return result.rowcount


async def require_draft(session: AsyncSession, draft_id: int) -> None:
    if await session.scalar(select(Draft.id).where(Draft.id == draft_id)) is None:
        raise DraftNotFound(draft_id)
