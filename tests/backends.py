"""The database backends the storage tests run on: a SQLite file, and a fresh database on a real
PostgreSQL server named by $COPYDESK_TEST_POSTGRES_URL (`.ci/postgres` starts one and prints it)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from storage import Database, open_database

POSTGRES_URL_VARIABLE = "COPYDESK_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")
NO_POSTGRES = (f"PostgreSQL tests skipped: ${POSTGRES_URL_VARIABLE} is not set. Start a server with "
               '`eval "$(.ci/postgres)"` (it installs Debian\'s postgresql if need be), or run .ci/run.')


@asynccontextmanager
async def fresh_postgres_url() -> AsyncIterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    server = os.environ.get(POSTGRES_URL_VARIABLE, "")
    if not server:
        pytest.skip(NO_POSTGRES)
    admin = create_async_engine(server, isolation_level="AUTOCOMMIT")
    name = f"copydesk_test_{uuid.uuid4().hex[:12]}"
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@asynccontextmanager
async def open_backend(backend: str, folder: Path) -> AsyncIterator[Database]:
    """An open, migrated, empty database on `backend`."""
    if backend == "sqlite":
        database = await open_database(f"sqlite+aiosqlite:///{folder / 'data' / 'copydesk.sqlite3'}")
        try:
            yield database
        finally:
            await database.close()
        return
    async with fresh_postgres_url() as url:
        database = await open_database(url)
        try:
            yield database
        finally:
            await database.close()
