"""storage/ against a real SQLite file: migrations, settings, the repository's use cases."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, func, inspect, select, text, update

from storage import (
    Base,
    Database,
    Draft,
    DraftNotFound,
    DraftStatus,
    Flag,
    FlagSource,
    FlagStatus,
    Rating,
    Repository,
    StorageError,
    open_database,
)


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

    assert tables == {"alembic_version", "drafts", "ratings", "improvements", "flags"}
    assert differences == []


async def test_every_pooled_connection_gets_the_sqlite_settings(database: Database) -> None:
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
    records = [record async for record in repository.iter_feedback(batch_size=2)]
    event.remove(database.engine.sync_engine, "before_cursor_execute", remember)

    assert [r.id for r in records] == [d.id for d in exported]
    assert len(page_queries) == 3  # 2 + 2 + 1
    head = records[0]
    assert (head.ups, head.downs, head.improvements) == (2, 1, ("one", "two"))
    assert head.output == f"ad {first.id}" and head.inputs == first.inputs and head.seed == 7
    assert "member_id" not in {field.name for field in dataclasses.fields(head)}
    assert "member-" not in repr(records) and "1234567890" not in repr(records)


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
        assert revisions == [("0001",)] and drafts == 1
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
