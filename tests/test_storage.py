"""storage/ against a real SQLite file and a real PostgreSQL server: migrations, settings, the
repository's use cases. Tests taking `database` or `repository` run on both backends."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, func, inspect, select, text, update

from backends import BACKENDS, open_backend
from storage import (
    Base,
    Database,
    DatabaseInUse,
    Draft,
    DraftNotFound,
    DraftStatus,
    Flag,
    FlagAlreadyResolved,
    FlagNotFound,
    FlagSource,
    FlagStatus,
    Rating,
    Repository,
    StorageError,
    backup_database,
    export_rows,
    member_hash,
    open_database,
    pseudonym,
    restore_database,
)
from storage.database import MIGRATIONS


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with open_backend(request.param, tmp_path) as opened:
        yield opened


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def new_draft(repository: Repository, **overrides: Any) -> Draft:
    fields: dict[str, Any] = {
        "task": "ad",
        "inputs": {"product": "rain boots", "audience": "commuters", "tone": "playful"},
        "system_prompt": "You write ads.",
        "user_prompt": "Write an ad for rain boots.",
        "template_version": "ad-1",
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "quantization": "nf4",
        "sampling": {"temperature": 0.7, "top_p": 0.9},
        "seed": 7,
        "author_id": "1234567890",
        "guild_id": "42",
        "channel_id": "43",
    }
    return await repository.create_draft(**(fields | overrides))


async def count(database: Database, table: str) -> int:
    async with database.engine.connect() as connection:
        return (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()


async def test_migrations_create_the_schema_the_models_describe(database: Database) -> None:
    def inspect_schema(connection: Any) -> tuple[set[str], list[Any]]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return set(inspect(connection).get_table_names()), compare_metadata(context, Base.metadata)

    async with database.engine.connect() as connection:
        tables, differences = await connection.run_sync(inspect_schema)

    assert tables == {
        "alembic_version", "drafts", "ratings", "improvements", "flags",
        "moderation_actions", "moderators", "consents", "erasures", "deliveries", "model_versions",
        "variant_picks", "template_versions", "task_defaults", "experiments", "experiment_variants",
    }
    assert differences == []


async def test_every_pooled_connection_gets_the_sqlite_settings(database: Database) -> None:
    if database.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's settings")
    async def settings() -> tuple[Any, ...]:
        async with database.engine.connect() as connection:
            return tuple(
                [
                    (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
                    for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
                ]
            )

    # Several at once, so the pool has to open more than one connection.
    results = await asyncio.gather(*(settings() for _ in range(4)))
    assert set(results) == {("wal", 1, 5000, 1)}  # synchronous 1 = NORMAL


async def test_a_draft_is_queued_then_running_then_done(repository: Repository) -> None:
    draft = await new_draft(repository)
    assert draft.status is DraftStatus.QUEUED
    assert draft.output == "" and draft.started_at is None and draft.finished_at is None

    assert await repository.mark_running(draft.id)
    assert await repository.record_progress(draft.id, "Stay dry")
    partial = await repository.get_draft(draft.id)
    assert partial is not None
    assert partial.status is DraftStatus.RUNNING and partial.output == "Stay dry"

    assert await repository.finish_draft(
        draft.id,
        output="Stay dry, stay bold.",
        prompt_tokens=31,
        completion_tokens=6,
        latency_ms=1200,
        ttft_ms=150,
    )
    done = await repository.get_draft(draft.id)
    assert done is not None
    assert done.status is DraftStatus.DONE
    assert done.output == "Stay dry, stay bold."
    assert (done.prompt_tokens, done.completion_tokens) == (31, 6)
    assert (done.latency_ms, done.ttft_ms) == (1200, 150)
    assert done.inputs == draft.inputs and done.sampling == {"temperature": 0.7, "top_p": 0.9}
    assert done.created_at.tzinfo is UTC and done.started_at and done.finished_at
    assert done.created_at <= done.started_at <= done.finished_at
    assert done.finished_at.tzinfo is UTC


async def test_failed_and_cancelled_drafts_keep_their_partial_output(
    repository: Repository,
) -> None:
    failed = await new_draft(repository)
    await repository.mark_running(failed.id)
    await repository.record_progress(failed.id, "Half an ad")
    assert await repository.fail_draft(failed.id, "out of memory")

    cancelled = await new_draft(repository)
    await repository.mark_running(cancelled.id)
    assert await repository.cancel_draft(cancelled.id, output="Half a")

    failed_row = await repository.get_draft(failed.id)
    cancelled_row = await repository.get_draft(cancelled.id)
    assert failed_row is not None and cancelled_row is not None
    assert (failed_row.status, failed_row.error, failed_row.output) == (
        DraftStatus.FAILED,
        "out of memory",
        "Half an ad",
    )
    assert failed_row.finished_at is not None
    assert (cancelled_row.status, cancelled_row.output) == (DraftStatus.CANCELLED, "Half a")
    assert cancelled_row.finished_at is not None


async def test_a_finished_draft_stays_as_it_ended(repository: Repository) -> None:
    draft = await new_draft(repository)
    await repository.cancel_draft(draft.id)

    assert not await repository.mark_running(draft.id)
    assert not await repository.record_progress(draft.id, "late tokens")
    assert not await repository.finish_draft(
        draft.id, output="late", prompt_tokens=1, completion_tokens=1, latency_ms=1, ttft_ms=1
    )
    row = await repository.get_draft(draft.id)
    assert row is not None and (row.status, row.output) == (DraftStatus.CANCELLED, "")

    with pytest.raises(DraftNotFound):
        await repository.mark_running(999)


async def test_recent_drafts_are_newest_first_and_filter_by_author(repository: Repository) -> None:
    first = await new_draft(repository, author_id="console:alice")
    second = await new_draft(repository, author_id="console:bob")
    third = await new_draft(repository, author_id="console:alice")

    assert [d.id for d in await repository.recent_drafts()] == [third.id, second.id, first.id]
    assert [d.id for d in await repository.recent_drafts(limit=1)] == [third.id]
    alice = await repository.recent_drafts(author_id="console:alice")
    assert [d.id for d in alice] == [third.id, first.id]


async def test_a_member_has_one_rating_per_draft_and_can_change_it(
    repository: Repository, database: Database
) -> None:
    draft = await new_draft(repository)
    first = await repository.rate(draft.id, "111", 1)
    changed = await repository.rate(draft.id, "111", -1)
    await repository.rate(draft.id, "222", 1)

    assert changed.id == first.id and changed.value == -1
    assert changed.updated_at >= first.created_at
    assert await count(database, "ratings") == 2
    assert await repository.rating_summary(draft.id) == (1, 1)


async def test_concurrent_ratings_leave_one_row_per_member(
    repository: Repository, database: Database
) -> None:
    draft = await new_draft(repository)
    members = [f"member-{n}" for n in range(20)]
    calls = [repository.rate(draft.id, member, 1) for member in members]
    calls += [repository.rate(draft.id, member, -1) for member in members[:10]]
    calls += [repository.rate(draft.id, member, 1) for member in members[:5]]

    await asyncio.gather(*calls)

    async with database.sessions() as session:
        rows = (await session.scalars(select(Rating).where(Rating.draft_id == draft.id))).all()
    assert sorted(row.member_id for row in rows) == sorted(members)
    ups, downs = await repository.rating_summary(draft.id)
    assert ups + downs == 20 and ups >= 10


async def test_rating_rejects_other_values_and_unknown_drafts(
    repository: Repository, database: Database
) -> None:
    draft = await new_draft(repository)
    for value in (0, 2, -5):
        with pytest.raises(ValueError):
            await repository.rate(draft.id, "111", value)
    with pytest.raises(DraftNotFound):
        await repository.rate(999, "111", 1)
    assert await count(database, "ratings") == 0


async def test_improvements_and_flags_are_stored_with_the_draft(repository: Repository) -> None:
    draft = await new_draft(repository)
    await repository.add_improvement(draft.id, "111", "Boots that laugh at puddles.")
    by_member = await repository.add_flag(draft.id, "makes a health claim", member_id="222")
    automatic = await repository.add_flag(draft.id, "blocked word", source="auto")

    assert (by_member.source, by_member.status) == (FlagSource.MEMBER, FlagStatus.OPEN)
    assert (automatic.source, automatic.member_id) == (FlagSource.AUTO, None)
    loaded = await repository.get_draft(draft.id)
    assert loaded is not None
    assert [(i.member_id, i.text) for i in loaded.improvements] == [
        ("111", "Boots that laugh at puddles.")
    ]
    assert [f.reason for f in loaded.flags] == ["makes a health claim", "blocked word"]

    with pytest.raises(DraftNotFound):
        await repository.add_improvement(999, "111", "text")
    with pytest.raises(DraftNotFound):
        await repository.add_flag(999, "reason")
    with pytest.raises(ValueError):
        await repository.add_flag(draft.id, "reason", source="robot")


async def test_deleting_a_draft_deletes_its_feedback_and_unlinks_regenerations(
    repository: Repository, database: Database
) -> None:
    draft = await new_draft(repository)
    regeneration = await new_draft(repository, parent_id=draft.id)
    await repository.rate(draft.id, "111", 1)
    await repository.add_improvement(draft.id, "111", "better")
    await repository.add_flag(draft.id, "bad")
    await repository.rate(regeneration.id, "111", 1)

    await repository.delete_draft(draft.id)

    assert await repository.get_draft(draft.id) is None
    kept = await repository.get_draft(regeneration.id)
    assert kept is not None and kept.parent_id is None and len(kept.ratings) == 1
    assert [await count(database, t) for t in ("ratings", "improvements", "flags")] == [1, 0, 0]
    with pytest.raises(DraftNotFound):
        await repository.delete_draft(draft.id)


async def test_iter_feedback_streams_finished_unflagged_drafts_in_batches(
    repository: Repository, database: Database
) -> None:
    async def finished(**overrides: Any) -> Draft:
        draft = await new_draft(repository, **overrides)
        await repository.finish_draft(
            draft.id,
            output=f"ad {draft.id}",
            prompt_tokens=1,
            completion_tokens=1,
            latency_ms=1,
            ttft_ms=1,
        )
        return draft

    exported = [await finished() for _ in range(4)]
    dismissed = await finished()
    await repository.add_flag(dismissed.id, "fine after all")
    async with database.sessions.begin() as session:
        await session.execute(update(Flag).values(status=FlagStatus.DISMISSED))
    exported.append(dismissed)
    await repository.add_flag((await finished()).id, "still open", source="auto")
    upheld = await finished()
    await repository.add_flag(upheld.id, "removed")
    async with database.sessions.begin() as session:
        await session.execute(
            update(Flag).where(Flag.draft_id == upheld.id).values(status=FlagStatus.UPHELD)
        )
    await new_draft(repository)  # still queued
    failed = await new_draft(repository)
    await repository.fail_draft(failed.id, "boom")

    first = exported[0]
    await repository.rate(first.id, "member-a", 1)
    await repository.rate(first.id, "member-b", -1)
    await repository.rate(first.id, "member-c", 1)
    await repository.add_improvement(first.id, "member-a", "one")
    await repository.add_improvement(first.id, "member-b", "two")

    page_queries: list[str] = []

    def remember(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM drafts" in statement and "LIMIT" in statement:
            page_queries.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", remember)
    records = [r async for r in repository.iter_feedback(batch_size=2, consent_default=True)]
    event.remove(database.engine.sync_engine, "before_cursor_execute", remember)

    assert [r.id for r in records] == [d.id for d in exported]
    assert len(page_queries) == 3  # 2 + 2 + 1
    head = records[0]
    assert (head.ups, head.downs, head.improvements) == (2, 1, ("one", "two"))
    assert head.output == f"ad {first.id}" and head.inputs == first.inputs and head.seed == 7
    assert "member_id" not in {field.name for field in dataclasses.fields(head)}
    assert "member-" not in repr(records) and "1234567890" not in repr(records)


async def finished_draft(repository: Repository, **overrides: Any) -> Draft:
    draft = await new_draft(repository, **overrides)
    await repository.finish_draft(
        draft.id, output=f"ad {draft.id}", prompt_tokens=1, completion_tokens=1, latency_ms=1,
        ttft_ms=1,
    )
    return draft


async def exported_ids(repository: Repository, **options: Any) -> list[int]:
    return [record.id async for record in repository.iter_feedback(**options)]


KEY = b"test pseudonym key"


async def test_the_newest_migration_downgrades_without_losing_data(database: Database) -> None:
    repository = Repository(database)
    draft = await new_draft(repository)
    await repository.rate(draft.id, "111", 1)
    await repository.add_flag(draft.id, "bad", member_id="222")

    def migrate(connection: Any, revision: str) -> set[str]:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        if revision == "head":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)
        return set(inspect(connection).get_table_names())

    async with database.engine.begin() as connection:
        down = await connection.run_sync(migrate, "0001")
        columns = await connection.run_sync(
            lambda sync: {c["name"] for c in inspect(sync).get_columns("drafts")}
        )
        kept = [
            (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in ("drafts", "ratings", "flags")
        ]
        up = await connection.run_sync(migrate, "head")

    assert down == {"alembic_version", "drafts", "ratings", "improvements", "flags"}
    assert "removed_at" not in columns and "message_id" not in columns
    assert kept == [1, 1, 1]
    assert {"moderation_actions", "moderators", "consents", "erasures"} <= up


async def test_a_draft_remembers_the_message_that_shows_it(repository: Repository) -> None:
    draft = await new_draft(repository)
    await repository.set_message(draft.id, "77", "88")

    loaded = await repository.get_draft(draft.id)
    assert loaded is not None and (loaded.channel_id, loaded.message_id) == ("77", "88")
    with pytest.raises(DraftNotFound):
        await repository.set_message(999, "77", "88")


async def test_the_first_moderator_decides_a_flag_and_the_second_is_told(
    repository: Repository, database: Database
) -> None:
    draft = await finished_draft(repository)
    flag = await repository.add_flag(draft.id, "insulting", member_id="reporter")

    results = await asyncio.gather(
        repository.resolve_flag(flag.id, moderator_id="mod-a", uphold=True, note="rude"),
        repository.resolve_flag(flag.id, moderator_id="mod-b", uphold=False, note=None),
        return_exceptions=True,
    )

    [won] = [r for r in results if isinstance(r, Flag)]
    [told] = [r for r in results if isinstance(r, FlagAlreadyResolved)]
    assert won.id == flag.id and won.draft.id == draft.id
    assert (told.status, told.resolved_by) == (won.status, won.resolved_by)
    assert told.resolved_at == won.resolved_at and told.flag.id == flag.id
    assert str(told) == f"flag {flag.id} was already {won.status} by {won.resolved_by}"
    stored = await repository.get_flag(flag.id)
    assert stored is not None and stored.resolved_by == won.resolved_by
    actions = await repository.recent_actions()
    action = "uphold" if won.status is FlagStatus.UPHELD else "dismiss"
    assert [(a.flag_id, a.draft_id, a.moderator_id, a.action, a.guild_id) for a in actions] == [
        (flag.id, draft.id, won.resolved_by, action, "42")
    ]
    removed = await repository.get_draft(draft.id)
    assert removed is not None
    assert (removed.removed_by is not None) == (won.status is FlagStatus.UPHELD)

    with pytest.raises(FlagNotFound):
        await repository.resolve_flag(999, moderator_id="mod-a", uphold=True, note=None)
    assert await count(database, "moderation_actions") == 1


async def test_upholding_a_flag_removes_the_draft_from_every_export(
    repository: Repository, database: Database
) -> None:
    kept = await finished_draft(repository)
    dismissed = await finished_draft(repository)
    removed = await finished_draft(repository)
    first = await repository.add_flag(removed.id, "spam", member_id="reporter")
    second = await repository.add_flag(removed.id, "also spam", member_id="reporter")
    not_spam = await repository.add_flag(dismissed.id, "spam?", member_id="someone")

    upheld = await repository.resolve_flag(first.id, moderator_id="mod-a", uphold=True, note="ok")
    await repository.resolve_flag(not_spam.id, moderator_id="mod-a", uphold=False, note=None)
    await repository.resolve_flag(second.id, moderator_id="mod-b", uphold=True, note=None)

    assert (upheld.status, upheld.resolved_by, upheld.note) == (FlagStatus.UPHELD, "mod-a", "ok")
    assert upheld.resolved_at is not None and upheld.draft.removed_by == "mod-a"
    draft = await repository.get_draft(removed.id)
    assert draft is not None and draft.removed_at == upheld.resolved_at
    assert draft.removed_by == "mod-a"  # the first removal stands
    assert await exported_ids(repository, consent_default=True) == [kept.id, dismissed.id]

    # The removal outlives the flags: erasing the reporter deletes them, not the decision.
    await repository.erase_member("reporter", member_hash(KEY, "reporter"))
    assert await count(database, "flags") == 1
    assert await exported_ids(repository, consent_default=True, pseudonym_key=KEY) == [
        kept.id, dismissed.id
    ]
    log = await repository.recent_actions()
    assert [(a.action, a.flag_id, a.draft_id) for a in log] == [
        ("uphold", None, removed.id), ("dismiss", not_spam.id, dismissed.id),
        ("uphold", None, removed.id),
    ]


async def test_open_flags_are_listed_oldest_first_with_their_drafts(
    repository: Repository,
) -> None:
    here = await finished_draft(repository, guild_id="1")
    there = await finished_draft(repository, guild_id="2")
    oldest = await repository.add_flag(here.id, "one", member_id="m")
    elsewhere = await repository.add_flag(there.id, "two", member_id="m")
    decided = await repository.add_flag(here.id, "three", source="auto")
    newest = await repository.add_flag(here.id, "four", source="auto")
    await repository.resolve_flag(decided.id, moderator_id="mod", uphold=False, note=None)

    listed = await repository.open_flags()
    assert [f.id for f in listed] == [oldest.id, elsewhere.id, newest.id]
    assert [f.draft.guild_id for f in listed] == ["1", "2", "1"]
    assert [f.id for f in await repository.open_flags("1")] == [oldest.id, newest.id]
    assert [f.id for f in await repository.open_flags("1", limit=1)] == [oldest.id]
    assert await repository.open_flags("3") == []

    got = await repository.get_flag(elsewhere.id)
    assert got is not None and got.draft.id == there.id and got.reason == "two"
    assert await repository.get_flag(999) is None


async def test_the_moderation_log_is_newest_first_and_per_guild(repository: Repository) -> None:
    draft = await finished_draft(repository, guild_id="1")
    flag = await repository.add_flag(draft.id, "bad", member_id="author")
    refused = await repository.log_action(
        guild_id="1", flag_id=flag.id, draft_id=draft.id, moderator_id="author",
        action="refused", note="own draft",
    )
    await repository.log_action(
        guild_id="2", flag_id=None, draft_id=None, moderator_id="mod", action="dismiss"
    )
    await repository.resolve_flag(flag.id, moderator_id="mod", uphold=False, note="fine")

    assert [a.action for a in await repository.recent_actions()] == [
        "dismiss", "dismiss", "refused"
    ]
    here = await repository.recent_actions("1")
    assert [(a.action, a.note) for a in here] == [("dismiss", "fine"), ("refused", "own draft")]
    assert here[1].id == refused.id and here[1].created_at <= here[0].created_at
    assert [a.guild_id for a in await repository.recent_actions(limit=1)] == ["1"]


async def test_moderators_are_counted_once_per_guild(repository: Repository) -> None:
    assert await repository.moderator_count("1") == 0
    await repository.note_moderator("1", "mod-a")
    await asyncio.gather(*(repository.note_moderator("1", "mod-a") for _ in range(5)))
    assert await repository.moderator_count("1") == 1
    before_b = datetime.now(UTC)
    await repository.note_moderator("1", "mod-b")
    await repository.note_moderator("2", "mod-a")

    assert await repository.moderator_count("1") == 2
    assert await repository.moderator_count("2") == 1
    assert await repository.moderator_count("1", since=before_b) == 1
    await repository.note_moderator("1", "mod-a")
    assert await repository.moderator_count("1", since=before_b) == 2


async def test_consent_is_one_changeable_choice_per_member(
    repository: Repository, database: Database
) -> None:
    assert await repository.get_consent("111") is None
    granted = await repository.set_consent("111", True)
    assert await repository.get_consent("111") is True
    withdrawn = await repository.set_consent("111", False)
    await repository.set_consent("222", True)

    assert await repository.get_consent("111") is False
    assert withdrawn.granted is False and withdrawn.updated_at >= granted.updated_at
    assert await count(database, "consents") == 2


async def test_erasing_a_member_deletes_all_of_theirs_and_nothing_of_others(
    repository: Repository, database: Database
) -> None:
    own = await finished_draft(repository, author_id="gone")
    regenerated = await finished_draft(repository, author_id="other", parent_id=own.id)
    theirs = await finished_draft(repository, author_id="other")
    await repository.rate(own.id, "other", 1)
    await repository.rate(theirs.id, "gone", 1)
    await repository.rate(theirs.id, "third", -1)
    await repository.add_improvement(own.id, "gone", "mine, better")
    await repository.add_improvement(theirs.id, "gone", "theirs, better")
    await repository.add_improvement(theirs.id, "third", "kept")
    flag = await repository.add_flag(theirs.id, "meh", member_id="gone")
    await repository.add_flag(theirs.id, "auto", source="auto")
    await repository.resolve_flag(flag.id, moderator_id="gone", uphold=False, note=None)
    await repository.set_consent("gone", True)
    await repository.set_consent("other", True)
    await repository.note_moderator("1", "gone")
    await repository.note_moderator("1", "other")

    summary = await repository.member_summary("gone")
    assert summary == {"drafts": 1, "ratings": 1, "improvements": 2, "flags": 1}

    hashed = member_hash(KEY, "gone")
    counts = await repository.erase_member("gone", hashed)

    assert counts == {"drafts": 2, "ratings": 1, "improvements": 2, "flags": 1}
    assert await repository.member_summary("gone") == dict.fromkeys(counts, 0)
    assert await repository.get_draft(own.id) is None
    assert await repository.get_draft(regenerated.id) is None  # it repeats the member's inputs
    other = await repository.get_draft(theirs.id)
    assert other is not None
    assert [(r.member_id, r.value) for r in other.ratings] == [("third", -1)]
    assert [i.text for i in other.improvements] == ["kept"]
    assert [f.source for f in other.flags] == [FlagSource.AUTO]
    assert await repository.get_consent("gone") is None
    assert await repository.get_consent("other") is True
    assert await repository.moderator_count("1") == 1
    [(stored, erased_at)] = await _rows(database, "SELECT member_hash, erased_at FROM erasures")
    assert stored == hashed and len(hashed) == 64
    # The moderation log is kept; the line of the deleted flag no longer points at it.
    [action] = await repository.recent_actions()
    assert (action.moderator_id, action.flag_id, action.draft_id) == ("gone", None, theirs.id)

    again = await repository.erase_member("gone", hashed)
    assert again == dict.fromkeys(counts, 0)
    [(_, erased_again)] = await _rows(database, "SELECT member_hash, erased_at FROM erasures")
    assert erased_again > erased_at


async def _rows(database: Database, query: str) -> list[Any]:
    async with database.engine.connect() as connection:
        return list((await connection.execute(text(query))).all())


async def test_exports_follow_consent_and_the_default(repository: Repository) -> None:
    silent = await finished_draft(repository, author_id="silent")
    agreed = await finished_draft(repository, author_id="agreed")
    refused = await finished_draft(repository, author_id="refused")
    await repository.set_consent("agreed", True)
    await repository.set_consent("refused", False)
    for member in ("silent", "agreed", "refused"):
        await repository.add_improvement(agreed.id, member, f"by {member}")
    # A regeneration repeats the original's inputs: its original's author must allow it too.
    regenerated = await finished_draft(repository, author_id="agreed", parent_id=refused.id)

    assert await exported_ids(repository) == [agreed.id]
    assert await exported_ids(repository, consent_default=True) == [silent.id, agreed.id]
    records = {r.id: r async for r in repository.iter_feedback(consent_default=False)}
    assert records[agreed.id].improvements == ("by agreed",)
    records = {r.id: r async for r in repository.iter_feedback(consent_default=True)}
    assert records[agreed.id].improvements == ("by silent", "by agreed")

    await repository.set_consent("refused", True)
    assert await exported_ids(repository) == [agreed.id, refused.id, regenerated.id]


async def test_exports_leave_out_erased_members_until_they_consent_again(
    repository: Repository,
) -> None:
    kept = await finished_draft(repository, author_id="stays")
    await finished_draft(repository, author_id="gone")
    await repository.erase_member("gone", member_hash(KEY, "gone"))
    later = await finished_draft(repository, author_id="gone")
    await repository.add_improvement(kept.id, "gone", "after erasure")

    assert await exported_ids(repository, consent_default=True, pseudonym_key=KEY) == [kept.id]
    [record] = [r async for r in repository.iter_feedback(consent_default=True, pseudonym_key=KEY)]
    assert record.improvements == ()
    with pytest.raises(StorageError, match="pseudonym key"):
        await exported_ids(repository, consent_default=True)
    # Another key cannot recognise the ledger's hashes: the caller must keep its key.
    assert await exported_ids(repository, consent_default=True, pseudonym_key=b"other") == [
        kept.id, later.id
    ]

    hashed = member_hash(KEY, "gone")
    assert not await repository.training_allowed("gone", hashed, consent_default=True)
    stays = member_hash(KEY, "stays")
    assert await repository.training_allowed("stays", stays, consent_default=True)
    assert not await repository.training_allowed("stays", stays, consent_default=False)

    await repository.set_consent("gone", True)
    assert await repository.training_allowed("gone", hashed, consent_default=False)
    records = [r async for r in repository.iter_feedback(pseudonym_key=KEY)]
    assert [r.id for r in records] == [later.id]
    records = [r async for r in repository.iter_feedback(consent_default=True, pseudonym_key=KEY)]
    assert [r.id for r in records] == [kept.id, later.id]
    assert records[0].improvements == ("after erasure",)


def test_pseudonyms_are_stable_keyed_and_never_the_id() -> None:
    first = pseudonym(KEY, "1234567890")
    assert first == pseudonym(KEY, "1234567890") and first.startswith("m_") and len(first) == 18
    assert first != pseudonym(b"another key", "1234567890")
    assert first != pseudonym(KEY, "1234567891")
    assert "1234567890" not in first and "1234567890" not in member_hash(KEY, "1234567890")
    assert member_hash(KEY, "1234567890") == member_hash(KEY, "1234567890")
    with pytest.raises(ValueError):
        member_hash(b"", "1234567890")


@pytest.mark.parametrize("export_format", ["sft", "dpo", "kto", "raw"])
async def test_exported_rows_carry_a_pseudonym_and_never_a_member_id(
    repository: Repository, export_format: str
) -> None:
    member_ids = ["member-9988776655", "member-5544332211", "member-1122334455"]
    original = await finished_draft(repository, author_id=member_ids[0])
    regenerated = await finished_draft(repository, author_id=member_ids[1], parent_id=original.id)
    await repository.rate(original.id, member_ids[2], 1)
    await repository.rate(regenerated.id, member_ids[2], -1)
    await repository.add_improvement(original.id, member_ids[2], "better")
    for member in member_ids:
        await repository.set_consent(member, True)

    keyed = [
        row
        async for row in export_rows(
            repository.iter_feedback(pseudonym_key=KEY), export_format
        )
    ]
    plain = [row async for row in export_rows(repository.iter_feedback(), export_format)]

    assert keyed and len(keyed) == len(plain)
    everything = json.dumps(keyed) + json.dumps(plain)
    assert not any(member in everything for member in member_ids)
    authors = {row["author"] if export_format == "raw" else row["metadata"]["author"]
               for row in keyed}
    assert authors <= {pseudonym(KEY, member) for member in member_ids[:2]}
    assert '"author"' not in json.dumps(plain)
    if export_format == "raw":
        assert {row["author"] for row in keyed} == {pseudonym(KEY, m) for m in member_ids[:2]}
        assert "author_id" not in keyed[0] and "member_id" not in keyed[0]


@pytest.mark.parametrize("below", ["db.sqlite3", "sub/db.sqlite3"])
async def test_open_database_says_where_it_cannot_write(tmp_path: Path, below: str) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    target = blocker / below

    with pytest.raises(StorageError) as raised:
        await open_database(sqlite_url(target))

    assert str(raised.value) == (
        f"cannot write the database at {target}: {blocker} is a file, not a folder"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


async def test_open_database_rejects_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite3"
    path.write_bytes(b"these are notes, not a database" * 100)

    with pytest.raises(StorageError, match=f"cannot open the database at .*{path.name}"):
        await open_database(sqlite_url(path))


async def test_reopening_keeps_the_data_and_migrates_nothing_twice(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "copydesk.sqlite3")
    first = await open_database(url)
    draft = await new_draft(Repository(first))
    await first.close()

    again = await open_database(url)
    try:
        assert (await Repository(again).get_draft(draft.id)) is not None
        async with again.engine.connect() as connection:
            versions = await connection.execute(text("SELECT version_num FROM alembic_version"))
            revisions = versions.all()
            drafts = await connection.scalar(select(func.count()).select_from(Draft))
        assert revisions == [("0010",)] and drafts == 1
    finally:
        await again.close()


def test_storage_imports_neither_bot_generation_torch_nor_discord() -> None:
    probe = (
        "import sys, storage; "
        "loaded = {name.split('.')[0] for name in sys.modules}; "
        "print(sorted(loaded & {'bot', 'generation', 'torch', 'discord'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.stdout.strip() == "[]"


# Crashes, restarts, one process per database, and text every backend can store.


async def test_text_a_backend_would_refuse_is_cleaned_on_the_way_in(repository: Repository) -> None:
    # PostgreSQL refuses NUL in text; lone surrogates (which Discord's JSON can carry) are not UTF-8.
    hostile = "rain\x00 boots \ud800 and \udfff"
    draft = await new_draft(repository, inputs={"product": hostile, "audience": "a\x00b"}, user_prompt=hostile,
                            author_id="12\x0034")
    await repository.finish_draft(draft.id, output=hostile, prompt_tokens=1, completion_tokens=1, latency_ms=1,
                                  ttft_ms=1)
    await repository.add_improvement(draft.id, "111", hostile)
    await repository.add_flag(draft.id, hostile, member_id="222")
    split_pair = await new_draft(repository, user_prompt="smile \ud83d\ude00")

    stored = await repository.get_draft(draft.id)
    cleaned = "rain boots \ufffd and \ufffd"
    assert stored is not None
    assert stored.inputs == {"product": cleaned, "audience": "ab"}
    assert (stored.user_prompt, stored.output, stored.author_id) == (cleaned, cleaned, "1234")
    assert [i.text for i in stored.improvements] == [cleaned] and [f.reason for f in stored.flags] == [cleaned]
    assert (await repository.get_draft(split_pair.id)).user_prompt == "smile \U0001f600"


async def test_one_process_at_a_time_claims_a_database(database: Database) -> None:
    async with database.claim("copydesk process 1 (the first)"):
        with pytest.raises(DatabaseInUse, match="in use by copydesk process 1 .the first.|already serving"):
            async with database.claim("copydesk process 2"):
                pass
    async with database.claim("copydesk process 3"):  # released when the first let go
        pass


async def test_drafts_left_unfinished_are_interrupted_and_announced_once(repository: Repository) -> None:
    queued, running, done = [await new_draft(repository) for _ in range(3)]
    from_console = await new_draft(repository, guild_id=None, channel_id=None)
    await repository.mark_running(running.id)
    await repository.finish_draft(done.id, output="Dry feet.", prompt_tokens=1, completion_tokens=1, latency_ms=1,
                                  ttft_ms=1)

    assert await repository.interrupt_unfinished("stopped") == 3
    states = {d.id: (d.status, d.error) for d in await repository.recent_drafts()}
    assert states[queued.id] == states[running.id] == states[from_console.id] == (DraftStatus.INTERRUPTED, "stopped")
    assert states[done.id] == (DraftStatus.DONE, None)
    assert not await repository.mark_running(queued.id), "an interrupted draft stays as it ended"

    since = datetime(2000, 1, 1, tzinfo=UTC)
    assert [d.id for d in await repository.unannounced_interruptions(since)] == [queued.id, running.id]
    await repository.set_message(queued.id, "43", "99")
    assert [d.id for d in await repository.unannounced_interruptions(since)] == [running.id]
    assert await repository.unannounced_interruptions(datetime.now(UTC)) == []
    assert await repository.interrupt_unfinished("stopped") == 0


def _write_actions(url: str, stop: threading.Event, committed: list[int]) -> None:
    """A second writer on its own connection: one committed row at a time, counted after each commit."""
    with closing(sqlite3.connect(url, timeout=30)) as connection:
        while not stop.is_set():
            connection.execute("INSERT INTO moderation_actions (moderator_id, action, created_at) "
                               "VALUES ('m', 'dismiss', '2026-01-01 00:00:00')")
            connection.commit()
            committed.append(1)


async def test_a_backup_taken_while_a_writer_writes_is_consistent_and_restores(tmp_path: Path) -> None:
    path = tmp_path / "data" / "copydesk.sqlite3"
    database = await open_database(sqlite_url(path))
    draft = await new_draft(Repository(database))
    await database.close()
    stop, committed = threading.Event(), []
    writer = threading.Thread(target=_write_actions, args=(str(path), stop, committed))
    writer.start()
    try:
        while len(committed) < 50:
            await asyncio.sleep(0.01)
        before = len(committed)
        drafts = await asyncio.to_thread(backup_database, sqlite_url(path), tmp_path / "backup.sqlite3")
        after = len(committed)
    finally:
        stop.set()
        writer.join()
    assert drafts == 1
    with closing(sqlite3.connect(tmp_path / "backup.sqlite3")) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        actions = copy.execute("SELECT count(*) FROM moderation_actions").fetchone()[0]
    assert before <= actions <= after, "every row committed before the backup began, none half-written"

    with pytest.raises(StorageError, match="already exists; pass --force to replace it"):
        backup_database(sqlite_url(path), tmp_path / "backup.sqlite3")
    assert backup_database(sqlite_url(path), tmp_path / "backup.sqlite3", overwrite=True) == 1

    restored = await open_database(sqlite_url(tmp_path / "elsewhere" / "copydesk.sqlite3"))
    await restored.close()
    assert restore_database(sqlite_url(tmp_path / "elsewhere" / "copydesk.sqlite3"), tmp_path / "backup.sqlite3",
                            holder="test") == 1
    reopened = await open_database(sqlite_url(tmp_path / "elsewhere" / "copydesk.sqlite3"))
    try:
        assert (await Repository(reopened).get_draft(draft.id)).inputs == draft.inputs
        assert await count(reopened, "moderation_actions") >= actions
        async with reopened.claim("the bot"):
            with pytest.raises(DatabaseInUse, match="in use by the bot"):
                restore_database(sqlite_url(tmp_path / "elsewhere" / "copydesk.sqlite3"),
                                 tmp_path / "backup.sqlite3", holder="test")
    finally:
        await reopened.close()


def test_backup_and_restore_refuse_what_they_cannot_do_safely(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="use pg_dump|pg_dump --format=custom"):
        backup_database("postgresql+asyncpg://copydesk@127.0.0.1/copydesk", tmp_path / "b.sqlite3")
    with pytest.raises(StorageError, match="there is no database at"):
        backup_database(sqlite_url(tmp_path / "none.sqlite3"), tmp_path / "b.sqlite3")
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"not a database" * 100)
    target = tmp_path / "copydesk.sqlite3"
    with pytest.raises(StorageError, match="notes.txt is not a copydesk database"):
        restore_database(sqlite_url(target), notes, holder="test")
    assert not target.exists() or target.stat().st_size == 0
    assert not (tmp_path / "b.sqlite3").exists() and not (tmp_path / "b.sqlite3.partial").exists()


async def test_a_delivery_is_claimed_once_however_often_and_however_concurrently_it_arrives(
    repository: Repository,
) -> None:
    assert await repository.claim_delivery("1001", "button") is True
    assert await repository.claim_delivery("1001", "button") is False

    claims = await asyncio.gather(*(repository.claim_delivery("1002", "form") for _ in range(20)))
    assert sorted(claims) == [False] * 19 + [True]


async def test_claims_older_than_any_repeat_are_forgotten(repository: Repository) -> None:
    await repository.claim_delivery("2001", "command")
    assert await repository.forget_deliveries(before=datetime.now(UTC) - timedelta(minutes=1)) == 0
    assert await repository.forget_deliveries(before=datetime.now(UTC) + timedelta(minutes=1)) == 1
    assert await repository.claim_delivery("2001", "command") is True
