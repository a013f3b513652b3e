"""Backup and restore of a SQLite database through SQLite's backup API: a consistent copy even
while another process writes, which a file copy of a WAL database is not."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url

from storage.atomic import make_folders, replacing
from storage.database import sqlite_lock, sqlite_path
from storage.errors import StorageError

USE_PG_DUMP = (
    "copydesk backup copies SQLite databases only; back up PostgreSQL with its own tools: "
    "pg_dump --format=custom --file=copydesk.dump DBNAME, restored with pg_restore --clean --dbname=DBNAME copydesk.dump"
)
BUSY_TIMEOUT_S = 30.0


def backup_database(url: str, destination: Path, *, overwrite: bool = False) -> int:
    """Copy the database at `url` to `destination` in one read transaction; returns the drafts copied.

    An existing `destination` is replaced only with `overwrite`. The copy is written and checked under
    a temporary name beside it and renamed into place once synced (storage.atomic), so `destination`
    is always either the previous file or the complete new one, whenever the backup stops.
    """
    source_path = _sqlite_file(url)
    if not source_path.exists():
        raise StorageError(f"there is no database at {source_path} to back up")
    if destination.exists() and not overwrite:
        raise StorageError(f"{destination} already exists; pass --force to replace it")
    try:
        with (replacing(destination) as partial,
              closing(sqlite3.connect(source_path, timeout=BUSY_TIMEOUT_S)) as source,
              closing(sqlite3.connect(partial)) as target):
            source.backup(target)  # all pages in one step: one snapshot, however busy the writer
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            drafts = _check(target, partial)
    except (OSError, sqlite3.Error) as error:
        raise StorageError(f"cannot back up {source_path} to {destination}: {error}") from error
    return drafts


def restore_database(url: str, backup: Path, *, holder: str) -> int:
    """Replace the database at `url` with `backup`, checked first; returns the drafts restored.

    Refused while a bot or console serves the database: it holds the database's lock.
    """
    target_path = _sqlite_file(url)
    if not backup.is_file():
        raise StorageError(f"there is no backup at {backup}")
    make_folders(target_path.parent)
    with sqlite_lock(target_path, holder):
        try:
            with (closing(sqlite3.connect(backup.absolute().as_uri() + "?mode=ro", uri=True)) as source,
                  closing(sqlite3.connect(target_path, timeout=BUSY_TIMEOUT_S)) as target):
                drafts = _check(source, backup)
                source.backup(target)
        except sqlite3.Error as error:
            raise StorageError(f"cannot restore {backup} to {target_path}: {error}") from error
    return drafts


def _sqlite_file(url: str) -> Path:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise StorageError(USE_PG_DUMP)
    path = sqlite_path(parsed)
    if path is None:
        raise StorageError(f"{parsed.render_as_string(hide_password=True)} is not a database file")
    return path


def _check(connection: sqlite3.Connection, path: Path) -> int:
    """The copy is sound and is copydesk's: integrity checked, drafts counted."""
    try:
        verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
        drafts = connection.execute("SELECT count(*) FROM drafts").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise StorageError(f"{path} is not a copydesk database: {error}") from None
    if verdict != "ok":
        raise StorageError(f"{path} fails SQLite's integrity check: {verdict}")
    return int(drafts)
