"""The draft's lifecycle table against the repository on a real SQLite file, and against the README."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from itertools import takewhile
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

from storage import (
    STOPPED_AS,
    TRANSITIONS,
    Database,
    Draft,
    DraftStatus,
    FlagSource,
    IllegalTransition,
    Repository,
    StopReason,
)
from storage.database import MIGRATIONS
from storage.lifecycle import ACTIVE
from test_storage import new_draft

README = Path(__file__).resolve().parent.parent / "README.md"

# The repository's way to each status, and the stop reason it records.
Move = Callable[[Repository, int], Awaitable[bool]]


def stop(reason: StopReason) -> Move:
    return lambda repository, draft_id: repository.stop_draft(draft_id, reason, error=f"why: {reason}")


MOVES: dict[tuple[DraftStatus, StopReason | None], Move] = {
    (DraftStatus.RUNNING, None): lambda repository, draft_id: repository.mark_running(draft_id),
    (DraftStatus.DONE, None): lambda repository, draft_id: repository.finish_draft(
        draft_id, output="Dry feet.", prompt_tokens=3, completion_tokens=2, latency_ms=5, ttft_ms=1),
    **{(STOPPED_AS[reason], reason): stop(reason) for reason in StopReason},
}

LISTED = [(source, wanted, reason) for source, targets in TRANSITIONS.items()
          for (wanted, reason) in MOVES if wanted in targets]
UNLISTED = [(source, wanted) for source in DraftStatus for wanted in DraftStatus if wanted not in TRANSITIONS[source]]


async def draft_in(repository: Repository, status: DraftStatus) -> int:
    """A new draft brought to `status` by moves the table lists."""
    draft = await new_draft(repository)
    if status is DraftStatus.QUEUED:
        return draft.id
    move = next(move for (wanted, _), move in MOVES.items() if wanted is status)
    assert await move(repository, draft.id)
    return draft.id


async def row(database: Database, draft_id: int) -> dict[str, Any]:
    """Every column of the draft, read afresh."""
    async with database.engine.connect() as connection:
        return dict((await connection.execute(select(Draft.__table__).where(Draft.id == draft_id))).one()._mapping)


def test_the_table_covers_every_status_and_reason_and_only_queued_and_running_still_change() -> None:
    assert set(TRANSITIONS) == set(DraftStatus) and set(STOPPED_AS) == set(StopReason)
    assert ACTIVE == {DraftStatus.QUEUED, DraftStatus.RUNNING}
    assert {wanted for wanted, _ in MOVES} == set(DraftStatus) - {DraftStatus.QUEUED}  # a test for every move


@pytest.mark.parametrize(("source", "wanted", "reason"), LISTED,
                         ids=[f"{s}-{w}-{r}" for s, w, r in LISTED])
async def test_every_listed_move_is_made_and_stored(
    repository: Repository, database: Database, source: DraftStatus, wanted: DraftStatus, reason: StopReason | None
) -> None:
    draft_id = await draft_in(repository, source)

    assert await MOVES[wanted, reason](repository, draft_id)

    after = await row(database, draft_id)
    assert (after["status"], after["stop_reason"]) == (wanted, reason)
    assert after["error"] == (f"why: {reason}" if reason else None)
    assert (after["finished_at"] is not None) == (wanted not in ACTIVE)


@pytest.mark.parametrize(("source", "wanted"), UNLISTED, ids=[f"{s}-{w}" for s, w in UNLISTED])
async def test_every_move_the_table_does_not_list_is_refused_and_changes_nothing(
    repository: Repository, database: Database, source: DraftStatus, wanted: DraftStatus
) -> None:
    draft_id = await draft_in(repository, source)
    before = await row(database, draft_id)
    # Nothing public moves a draft back to queued: ask the one gate every status change goes through.
    moves = [move for (status, _), move in MOVES.items() if status is wanted] or [
        lambda repository, draft_id: repository._move(draft_id, wanted)]

    for move in moves:
        if source in ACTIVE:  # a bug in the caller
            with pytest.raises(IllegalTransition, match=f"draft #{draft_id} is {source}; it cannot become {wanted}"):
                await move(repository, draft_id)
        else:  # the draft ended first (a late token after a cancel): it stays as it ended
            assert await move(repository, draft_id) is False
        assert await row(database, draft_id) == before


async def test_a_restart_marks_every_unfinished_draft_interrupted_by_a_crash(
    repository: Repository, database: Database
) -> None:
    drafts = {status: await draft_in(repository, status) for status in DraftStatus}

    assert await repository.interrupt_unfinished("copydesk stopped") == len(ACTIVE)

    for status, draft_id in drafts.items():
        after = await row(database, draft_id)
        ended = (DraftStatus.INTERRUPTED, StopReason.CRASH) if status in ACTIVE else (status, after["stop_reason"])
        assert (after["status"], after["stop_reason"]) == ended


async def test_held_means_an_open_automatic_flag_and_told_means_a_message(
    repository: Repository, database: Database
) -> None:
    held, flagged_by_member, released = [await draft_in(repository, DraftStatus.DONE) for _ in range(3)]
    await repository.add_flag(held, "held automatically: a phone number", source=FlagSource.AUTO)
    await repository.add_flag(flagged_by_member, "rude", member_id="reporter")
    auto = await repository.add_flag(released, "held automatically: a phone number", source=FlagSource.AUTO)
    await repository.resolve_flag(auto.id, moderator_id="mod", uphold=False)
    await repository.set_message(held, "43", "99")

    loaded = {draft_id: await repository.get_draft(draft_id) for draft_id in (held, flagged_by_member, released)}
    assert {draft_id: draft.held for draft_id, draft in loaded.items() if draft} == {
        held: True, flagged_by_member: False, released: False}
    assert {draft_id: draft.member_told for draft_id, draft in loaded.items() if draft} == {
        held: True, flagged_by_member: False, released: False}
    async with database.sessions() as session:  # the same facts as SQL, for queries
        assert list(await session.scalars(select(Draft.id).where(Draft.held))) == [held]
        assert list(await session.scalars(select(Draft.id).where(Draft.member_told))) == [held]


async def test_migration_0004_gives_old_stopped_drafts_the_reason_their_row_still_tells(
    repository: Repository, database: Database
) -> None:
    cancelled, failed, expired, interrupted = [await draft_in(repository, DraftStatus.RUNNING) for _ in range(4)]
    await repository.cancel_draft(cancelled)
    await repository.fail_draft(failed, "out of memory")
    await repository.stop_draft(expired, StopReason.DEADLINE, error="stopped at its deadline of 300 s")
    await repository.interrupt_draft(interrupted, "copydesk stopped")

    def migrate(connection: Any, revision: str) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        (command.upgrade if revision == "head" else command.downgrade)(config, revision)

    async with database.engine.begin() as connection:
        await connection.run_sync(migrate, "0003")
        await connection.run_sync(migrate, "head")
        reasons = dict((await connection.execute(text("SELECT id, stop_reason FROM drafts"))).all())

    assert reasons == {cancelled: "member", failed: "error", expired: "deadline", interrupted: None}


def readme_table(after: str) -> list[list[str]]:
    """The body rows of the first table after the words `after` in the README's "A draft's life"."""
    section = README.read_text().split("## A draft's life\n", 1)[1].split("\n## ", 1)[0]
    lines = section.split(after, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = list(takewhile(lambda line: line.startswith("|"), lines[start:]))
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]


def test_the_readme_shows_the_lifecycle_table_the_code_has() -> None:
    moves = {DraftStatus(status): frozenset() if targets == "—" else frozenset(map(DraftStatus, re.split(r",\s*", targets)))
             for status, targets in readme_table("moves only as this table says")}
    assert moves == TRANSITIONS
    stops = {StopReason(reason): DraftStatus(status) for reason, status, _ in readme_table("keeps why in")}
    assert stops == STOPPED_AS
