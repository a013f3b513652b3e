"""Moderation and privacy end to end: the real bot against the fake Discord, the real model, a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import ModerationSettings
from bot.discord.client import CopydeskBot
from bot.discord.drafting import HELD
from bot.discord.review import REMOVED
from bot.service import DraftService, Policy
from storage import DraftStatus, Repository
from support.discord_harness import EPHEMERAL, custom_ids, finished, run_command, start_bot, stop_bot
from support.fake_discord import FakeDiscord

AD = {"product": "a solar lantern", "audience": "campers", "tone": "playful"}
UPDATE_MESSAGE = 7
# Words the tiny model cannot avoid: every draft trips the blocked-term check.
EVERYDAY_WORDS = ("the", "a", "an", "and", "to", "of", "for", "your", "is", "with", "in", "you", "our")


@pytest.fixture
async def moderated(fake: FakeDiscord) -> AsyncIterator[ModerationSettings]:
    """A review channel, and a 'Reviewer' role (no permissions) that the config makes moderators."""
    reviewer = fake.guild.add_role("Reviewer")
    fake.guild.add_member("rita", roles=(reviewer,))
    yield ModerationSettings(roles=("Reviewer",), review_channel_id=fake.guild.channel("moderation").id)


@pytest.fixture
async def bot(fake: FakeDiscord, service: DraftService, moderated: ModerationSettings) -> AsyncIterator[CopydeskBot]:
    running, task = await start_bot(fake, service, moderated)
    yield running
    await stop_bot(running, task)


def review_posts(fake: FakeDiscord) -> list[dict[str, Any]]:
    return [m for m in fake.channel_messages(fake.guild.channel("moderation")) if m.get("components")]


async def flag(fake: FakeDiscord, message: dict[str, Any], draft_id: int, reason: str, user: Any) -> None:
    click = await fake.click_button(message, f"copydesk:flag:{draft_id}", user=user)
    modal = await click.wait_for_response()
    submitted = await fake.submit_modal(modal["data"]["custom_id"], {"reason": reason}, user=user)
    await submitted.wait_for_response()


async def decide(fake: FakeDiscord, post: dict[str, Any], verdict: str, flag_id: int, user: Any) -> dict[str, Any]:
    click = await fake.click_button(post, f"copydesk:mod:{verdict}:{flag_id}", user=user)
    return await click.wait_for_response()


async def test_a_flag_reaches_the_review_channel_and_uphold_removes_the_draft(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository, service: DraftService, tmp_path: Path
) -> None:
    alice, mia = fake.guild.member("alice"), fake.guild.member("mia")
    interaction, message = await run_command(fake, "draft", AD, "ad", user=alice)
    [draft] = await repository.recent_drafts()
    await flag(fake, message, draft.id, "Promises \u202eeerf\u202c things \u200b", alice)
    [post] = await fake.wait_for(lambda: review_posts(fake) or None)
    [flag_row] = (await repository.get_draft(draft.id)).flags
    assert custom_ids(post) == [f"copydesk:mod:uphold:{flag_row.id}", f"copydesk:mod:dismiss:{flag_row.id}"]
    assert f"Flag #{flag_row.id}** on draft #{draft.id}" in post["content"]
    assert "\\u202e" in post["content"] and "\\u200b" in post["content"] and "\u202e" not in post["content"]
    assert "\u202e" in flag_row.reason, "the stored text stays raw"

    answer = await decide(fake, post, "uphold", flag_row.id, mia)
    assert answer["type"] == UPDATE_MESSAGE and "upheld — the draft was removed" in answer["data"]["content"]
    assert interaction.original["content"] == REMOVED and not interaction.original["components"]
    stored = await repository.get_draft(draft.id)
    assert stored.removed_at is not None and stored.flags[0].status == "upheld"
    [line] = await service.moderation.log(str(fake.guild.id))
    assert (line.action, line.moderator_id, line.flag_id) == ("uphold", str(mia.user.id), flag_row.id)
    summary = await service.export(tmp_path / "export", formats=("raw",))
    assert summary.count("raw") == 0, "an upheld draft is in no export"

    log = await fake.invoke_command("review", {"show": "log"}, user=mia)
    assert "**uphold** flag #" in (await log.wait_for_response())["data"]["content"]


async def test_non_moderators_and_members_who_lost_the_role_are_refused(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository
) -> None:
    alice, rita = fake.guild.member("alice"), fake.guild.member("rita")
    _, message = await run_command(fake, "draft", AD, "ad", user=alice)
    [draft] = await repository.recent_drafts()
    await flag(fake, message, draft.id, "off-brand", alice)
    [post] = await fake.wait_for(lambda: review_posts(fake) or None)
    flag_id = (await repository.get_draft(draft.id)).flags[0].id

    denied = await fake.invoke_command("review", {}, user=alice)
    refusal = (await denied.wait_for_response())["data"]
    assert (refusal["content"], refusal["flags"]) == ("⚠️ Only moderators can do that.", EPHEMERAL)
    queue = await fake.invoke_command("review", {}, user=rita)  # a configured role, no permissions
    await queue.wait_for_response()
    listed = await fake.wait_for(lambda: [m for m in queue.followups if m.get("components")] or None)
    assert custom_ids(listed[0]) == [f"copydesk:mod:uphold:{flag_id}", f"copydesk:mod:dismiss:{flag_id}"]

    rita.roles.clear()  # the role is taken away between the command and the click
    refused = await decide(fake, post, "uphold", flag_id, rita)
    assert refused["data"]["content"] == "⚠️ Only moderators can do that."
    assert (await repository.get_draft(draft.id)).flags[0].status == "open"


async def test_concurrent_uphold_and_dismiss_leave_one_outcome(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository, service: DraftService
) -> None:
    alice, mia, rita = (fake.guild.member(name) for name in ("alice", "mia", "rita"))
    _, message = await run_command(fake, "draft", AD, "ad", user=alice)
    [draft] = await repository.recent_drafts()
    await flag(fake, message, draft.id, "misleading", alice)
    [post] = await fake.wait_for(lambda: review_posts(fake) or None)
    flag_id = (await repository.get_draft(draft.id)).flags[0].id
    answers = await asyncio.gather(decide(fake, post, "uphold", flag_id, mia),
                                   decide(fake, post, "dismiss", flag_id, rita))
    winners = [a for a in answers if a["type"] == UPDATE_MESSAGE]
    losers = [a for a in answers if a["type"] != UPDATE_MESSAGE]
    assert len(winners) == 1 and len(losers) == 1
    assert re.match(rf"⚠️ flag #{flag_id} was already (upheld|dismissed) by <@\d+>", losers[0]["data"]["content"])
    status = (await repository.get_draft(draft.id)).flags[0].status
    assert status in ("upheld", "dismissed")
    lines = await service.moderation.log(str(fake.guild.id))
    verdict = {"upheld": "uphold", "dismissed": "dismiss"}[status]
    assert 1 <= len(lines) <= 2 and [line.action for line in lines].count(verdict) == 1


async def test_moderators_cannot_decide_on_their_own_drafts_unless_they_are_the_only_one(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository
) -> None:
    alice, mia, rita = (fake.guild.member(name) for name in ("alice", "mia", "rita"))
    _, message = await run_command(fake, "draft", AD, "ad", user=mia)
    [draft] = await repository.recent_drafts()
    await flag(fake, message, draft.id, "typo in the headline", alice)
    [post] = await fake.wait_for(lambda: review_posts(fake) or None)
    flag_id = (await repository.get_draft(draft.id)).flags[0].id

    alone = await decide(fake, post, "dismiss", flag_id, mia)  # no other moderator has been seen yet
    assert alone["type"] == UPDATE_MESSAGE

    _, second = await run_command(fake, "draft", AD, "ad", user=mia)
    newest = (await repository.recent_drafts())[0]
    await flag(fake, second, newest.id, "too long", alice)
    newest_flag = (await repository.get_draft(newest.id)).flags[0].id
    post = await fake.wait_for(lambda: next((p for p in review_posts(fake)
                                             if f"copydesk:mod:uphold:{newest_flag}" in custom_ids(p)), None))
    await (await fake.invoke_command("review", {}, user=rita)).wait_for_response()  # rita is a moderator too
    refused = await decide(fake, post, "uphold", newest_flag, mia)
    assert "about your own draft" in refused["data"]["content"]
    assert (await repository.get_draft(newest.id)).flags[0].status == "open"


async def test_an_automatically_held_draft_never_reaches_the_members_channel(
    fake: FakeDiscord, repository: Repository, engine: Any, moderated: ModerationSettings, policy: Policy
) -> None:
    strict = DraftService(repository, engine, Policy(engine=policy.engine, member_key=policy.member_key,
                                                     moderation=ModerationSettings(blocked_terms=EVERYDAY_WORDS)))
    bot, task = await start_bot(fake, strict, moderated)
    try:
        await held_draft_stays_hidden_until_released(fake, repository)
    finally:
        await stop_bot(bot, task)


async def held_draft_stays_hidden_until_released(fake: FakeDiscord, repository: Repository) -> None:
    interaction = await fake.invoke_command("draft", AD, subcommand="ad")
    await interaction.wait_for_response()
    # The notice shows while the draft streams (with Cancel); the final one has no buttons.
    final = await interaction.wait_for_original(lambda m: HELD in m["content"] and not m["components"], timeout=90)
    [post] = await fake.wait_for(lambda: review_posts(fake) or None, timeout=60)
    [listed] = await repository.recent_drafts()
    draft = await repository.get_draft(listed.id)
    assert draft.status == DraftStatus.DONE and draft.output.strip()
    assert "held automatically: contains the blocked term" in draft.flags[0].reason
    moderation_channel = str(fake.guild.channel("moderation").id)
    member_payloads = [json.dumps(r.json, ensure_ascii=False) for r in fake.requests
                       if isinstance(r.json, dict) and moderation_channel not in r.path]
    # Checks run before each step is shown: from the first blocked word on, nothing reached the channel.
    words = re.findall(r"\w+", draft.output)
    first = next(i for i, word in enumerate(words) if word.casefold() in EVERYDAY_WORDS)
    tripped = " ".join(words[first:first + 3])
    assert len(words[first:first + 3]) == 3
    assert all(tripped not in " ".join(re.findall(r"\w+", payload)) for payload in member_payloads)
    assert final["components"] == []

    released = await decide(fake, post, "dismiss", draft.flags[0].id, fake.guild.member("mia"))
    assert released["type"] == UPDATE_MESSAGE
    shown = await fake.wait_for(lambda: interaction.original if finished(interaction.original) else None)
    assert " ".join(draft.output.split()[:5]) in " ".join(shown["content"].split())


async def test_privacy_show_consent_and_delete(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository, service: DraftService, tmp_path: Path
) -> None:
    alice, mia = fake.guild.member("alice"), fake.guild.member("mia")
    _, alices = await run_command(fake, "draft", AD, "ad", user=alice)
    await run_command(fake, "summarize", {"text": "Mia's notes on the trail: bring water."}, user=mia)
    drafts = await repository.recent_drafts()
    mias_draft = next(d for d in drafts if d.author_id == str(mia.user.id))
    alices_draft = next(d for d in drafts if d.author_id == str(alice.user.id))
    rate = await fake.click_button(alices, f"copydesk:rate:{alices_draft.id}:up", user=mia)
    await rate.wait_for_response()

    shown = await fake.invoke_command("privacy", {}, subcommand="show", user=mia)
    answer = await shown.wait_for_response()
    assert answer["data"]["flags"] == EPHEMERAL
    assert "1 drafts, 1 ratings, 0 improvements, 0 flags" in answer["data"]["content"]
    assert "may **not** be used as training data (this server's default)" in answer["data"]["content"]
    assert (await service.export(tmp_path / "before", formats=("kto",))).count("kto") == 0

    allow = await fake.click_button(shown.original, f"copydesk:privacy:allow:{mia.user.id}", user=mia)
    assert "may now be used" in (await allow.wait_for_response())["data"]["content"]
    assert (await service.export(tmp_path / "after", formats=("raw",))).count("raw") == 1

    delete = await fake.invoke_command("privacy", {}, subcommand="delete", user=mia)
    prompt = await delete.wait_for_response()
    assert "cannot be undone" in prompt["data"]["content"]
    other = await fake.click_button(delete.original, f"copydesk:privacy:erase:{mia.user.id}", user=alice)
    assert "belongs to someone else" in (await other.wait_for_response())["data"]["content"]
    erase = await fake.click_button(delete.original, f"copydesk:privacy:erase:{mia.user.id}", user=mia)
    done = (await erase.wait_for_response())["data"]["content"]
    assert done == "Done. Removed 1 drafts, 1 ratings, 0 improvements, 0 flags."
    assert await repository.get_draft(mias_draft.id) is None
    assert await repository.rating_summary(alices_draft.id) == (0, 0)
    await service.privacy.set_training_use(type("M", (), {"id": str(alice.user.id)})(), True)
    await service.export(tmp_path / "final", formats=("raw",))
    rows_text = "".join(path.read_text() for path in (tmp_path / "final").glob("*.jsonl"))
    exported_rows = [json.loads(line) for line in rows_text.splitlines()]
    text = rows_text + (tmp_path / "final" / "README.md").read_text()
    assert [row["output"] for row in exported_rows] == [alices_draft.output]
    assert "Mia's notes" not in text
    assert not re.search(r"\b\d{17,20}\b", text), "no Discord ids in exports"
    assert not re.search(r"<@!?&?\d+>", text), "no mentions of real members"


async def test_moderators_see_the_status(fake: FakeDiscord, bot: CopydeskBot) -> None:
    await run_command(fake, "draft", AD, "ad")
    shown = await fake.invoke_command("status", {}, user=fake.guild.member("mia"))
    content = (await shown.wait_for_response())["data"]["content"]
    assert "model: SmolLM2-135M-Instruct (int4, cpu)" in content
    assert "drafts in the last hour: 0 queued, 0 running, 1 done, 0 failed, 0 cancelled" in content
    assert "now: 0 drafts being written, 0 waiting, 8 slots" in content
    refused = await fake.invoke_command("status", {}, user=fake.guild.member("alice"))
    assert (await refused.wait_for_response())["data"]["content"] == "⚠️ Only moderators can do that."
