"""Opening the database: engine, per-connection settings, and migrations to the newest schema."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from storage.errors import StorageError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# WAL lets readers work while one writer writes; busy_timeout makes a second writer wait
# instead of failing at once; SQLite enforces foreign keys (and so cascades) only when asked.
SQLITE_PRAGMAS = {
    "journal_mode": "WAL",
    "busy_timeout": "5000",
    "foreign_keys": "ON",
    "synchronous": "NORMAL",
}


class Database:
    """The engine and the session factory; one session per unit of work."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Objects stay readable after commit, when the session that loaded them is gone.
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def close(self) -> None:
        await self.engine.dispose()


async def open_database(url: str) -> Database:
    """Open (creating if need be) the database at `url` and migrate it to the newest schema.

    `url` is e.g. ``sqlite+aiosqlite:///data/copydesk.sqlite3`` or ``postgresql+asyncpg://…``.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_file(parsed)
    engine = create_async_engine(parsed)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to_head)
    except (SQLAlchemyError, CommandError) as exc:  # e.g. not a database, or a newer schema
        await engine.dispose()
        shown = parsed.render_as_string(hide_password=True)
        raise StorageError(f"cannot open the database at {shown}: {exc}") from exc
    return Database(engine)


def _check_sqlite_file(url: URL) -> None:
    """Fail early, with the path in the message, where SQLite could not write its files."""
    if not url.database or url.database == ":memory:" or url.query.get("uri"):
        return
    path = Path(url.database).absolute()

    def fail(reason: str) -> StorageError:
        return StorageError(f"cannot write the database at {path}: {reason}")

    existing = next(folder for folder in path.parents if folder.exists())
    if not existing.is_dir():
        raise fail(f"{existing} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(exc.strerror or str(exc)) from exc
    if path.is_dir():
        raise fail("it is a folder")
    # The folder must be writable even when the file is: WAL keeps -wal and -shm files beside it.
    if not os.access(path.parent, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise fail("permission denied")


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for name, value in SQLITE_PRAGMAS.items():
        cursor.execute(f"PRAGMA {name}={value}")
    cursor.close()


def _upgrade_to_head(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
