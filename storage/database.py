"""Opening the database: engine, per-connection settings, and migrations to the newest schema."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage.errors import DatabaseInUse, StorageError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# WAL lets readers work while one writer writes; busy_timeout makes a second writer wait
# instead of failing at once; SQLite enforces foreign keys (and so cascades) only when asked.
SQLITE_PRAGMAS = {
    "journal_mode": "WAL",
    "busy_timeout": "5000",
    "foreign_keys": "ON",
    "synchronous": "NORMAL",
}


# Any number that no other application of the same PostgreSQL server uses for an advisory lock.
INSTANCE_LOCK_KEY = 0x636F707964657363  # "copydesc"
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """Text every backend stores as given back: without NUL (PostgreSQL refuses it in text) and with
    lone surrogates (not encodable as UTF-8) replaced by U+FFFD; a split surrogate pair is joined."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii() and _SURROGATE.search(value):
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_clean(item) for item in value)
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    return value


def _clean_parameters(_connection: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                      _executemany: bool) -> tuple[str, Any]:
    """Every value on its way to the database, whichever table and statement: the one place text is cleaned."""
    return statement, _clean(parameters)


class Sessions:
    """The session factory: `sessions()` to read, `sessions.begin()` for a transaction that writes.

    SQLite has one writer at a time. Left to itself, a burst of writers each takes a pooled
    connection and then waits inside SQLite, whose busy handler sleeps and retries: the burst
    holds every connection of the pool while it crawls, the rest of it waits for the pool, and
    some time out ("database is locked", or the pool's 30 s checkout timeout). So on SQLite the
    write transactions of this process take turns on an asyncio lock, in order of arrival, before
    they take a connection: the one writing never waits for SQLite, those waiting hold nothing,
    and reads keep the rest of the pool. PostgreSQL writes concurrently; there is no lock there.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        # Objects stay readable after commit, when the session that loaded them is gone.
        self._factory = async_sessionmaker(engine, expire_on_commit=False)
        self._writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    def __call__(self) -> AsyncSession:
        return self._factory()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed at the end of the block (rolled back on an error)."""
        async with contextlib.AsyncExitStack() as stack:
            if self._writer is not None:
                await stack.enter_async_context(self._writer)
            yield await stack.enter_async_context(self._factory.begin())


class Database:
    """The engine and the session factory; one session per unit of work."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = Sessions(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def claim(self, holder: str) -> AsyncIterator[None]:
        """Serve this database from one process only; another claim fails with DatabaseInUse, saying why.

        SQLite: an OS lock on `<database>.lock`; PostgreSQL: a session advisory lock. Either is
        released by the OS or the server when the process dies, even by SIGKILL, so none goes stale.
        """
        if self.engine.dialect.name == "sqlite":
            path = sqlite_path(self.engine.url)
            if path is None:
                yield
                return
            with sqlite_lock(path, holder):
                yield
            return
        async with self.engine.connect() as connection:
            claimed = await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": INSTANCE_LOCK_KEY})
            await connection.commit()
            if not claimed:
                shown = self.engine.url.render_as_string(hide_password=True)
                raise DatabaseInUse(f"another copydesk process is already serving the database at {shown}; "
                                    "stop it first, or point this one at another database")
            try:
                yield
            finally:
                await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": INSTANCE_LOCK_KEY})
                await connection.commit()

    async def in_use(self) -> bool:
        """Another process serves this database now (holds the claim): the bot, typically."""
        try:
            async with self.claim(f"copydesk probe (pid {os.getpid()})"):
                return False
        except DatabaseInUse:
            return True


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for an in-memory or URI database."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:" or url.query.get("uri"):
        return None
    return Path(url.database).absolute()


@contextmanager
def sqlite_lock(database: Path, holder: str) -> Iterator[None]:
    """An exclusive `flock` on `<database>.lock`, which names its holder for whoever is refused."""
    path = database.with_name(database.name + ".lock")
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held_by = os.read(descriptor, 500).decode(errors="replace").strip() or "another process"
            raise DatabaseInUse(f"the database at {database} is in use by {held_by}; stop it first, "
                                "or point this one at another database") from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, holder.encode())
        yield
    finally:
        os.close(descriptor)  # releases the lock


async def open_database(url: str) -> Database:
    """Open (creating if need be) the database at `url` and migrate it to the newest schema.

    `url` is e.g. ``sqlite+aiosqlite:///data/copydesk.sqlite3`` or ``postgresql+asyncpg://…``.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_file(parsed)
    engine = create_async_engine(parsed, json_serializer=lambda value: json.dumps(_clean(value)))
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
    event.listen(engine.sync_engine, "before_cursor_execute", _clean_parameters, retval=True)
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
    path = sqlite_path(url)
    if path is None:
        return

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
