"""Shared fixtures: a real SQLite file per test, and one real engine on the embedded model in NF4 per session."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import EngineSettings, ModerationSettings
from bot.discord.client import CopydeskBot
from bot.service import DraftService, Policy
from generation import EngineConfig, LocalEngine, resolve_model
from storage import Database, Repository, open_database
from support.discord_harness import assert_nothing_the_model_wrote_pings, start_bot, stop_bot
from support.fake_discord import FakeDiscord

# Small budgets keep the suite to minutes on 2 CPU cores; the code path is the production one.
TEST_MAX_NEW_TOKENS = 24
TEST_CONTEXT_TOKENS = 512


def rows(database: Path, query: str) -> list[tuple[object, ...]]:
    """Read a database file with the standard library, independently of the code under test."""
    with sqlite3.connect(database) as connection:
        return connection.execute(query).fetchall()


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The user's model cache, so the embedded model is converted once per machine, not per run."""
    return Path(os.environ.get("COPYDESK_CACHE_DIR") or "~/.cache/copydesk").expanduser()


@pytest.fixture(scope="session")
async def engine(cache_dir: Path) -> AsyncIterator[LocalEngine]:
    source = resolve_model("", cache_dir)
    engine = await LocalEngine.start(
        source, device="cpu",
        config=EngineConfig(max_concurrent=8, max_context_tokens=TEST_CONTEXT_TOKENS),
    )
    yield engine
    await engine.close()


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'copydesk.sqlite3'}")
    yield db
    await db.close()


@pytest.fixture
def repository(database: Database) -> Repository:
    return Repository(database)


# Sampled drafts sometimes contain a run of digits that reads as a phone number, or a "best" that a
# compliance rule holds; tests that are not about the automatic checks must not depend on that luck
# (test_safety, test_moderation and test_compliance are).
NO_AUTOMATIC_CHECKS = ModerationSettings(detect_personal_data=False, detect_prompt_leak=False, check_compliance=False)
NO_AUTOMATIC_CHECKS_ENV = {"COPYDESK_MODERATION__DETECT_PERSONAL_DATA": "false",
                           "COPYDESK_MODERATION__DETECT_PROMPT_LEAK": "false",
                           "COPYDESK_MODERATION__CHECK_COMPLIANCE": "false"}


@pytest.fixture
def policy() -> Policy:
    return Policy(engine=EngineSettings(max_new_tokens=TEST_MAX_NEW_TOKENS), moderation=NO_AUTOMATIC_CHECKS,
                  member_key=b"test member key")


@pytest.fixture
def service(repository: Repository, engine: LocalEngine, policy: Policy) -> DraftService:
    return DraftService(repository, engine, policy)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    """A fake Discord with ten extra members; every request the bot made must fit Discord's API."""
    async with FakeDiscord(heartbeat_interval=1.0) as fake:
        for i in range(10):
            fake.guild.add_member(f"member{i}")
        yield fake
        fake.assert_all_requests_valid()
        assert_nothing_the_model_wrote_pings(fake)


@pytest.fixture
async def bot(fake: FakeDiscord, service: DraftService) -> AsyncIterator[CopydeskBot]:
    running, task = await start_bot(fake, service)
    yield running
    await stop_bot(running, task)
