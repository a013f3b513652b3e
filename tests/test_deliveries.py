"""Every interaction has at most one effect, however often Discord delivers it.

Each kind — a slash command, a message command, a button, a form submit — is delivered twice
through the fake Discord (the same INTERACTION_CREATE, id and token), once after the first was
answered and once while it is still being handled, and the rows it writes are counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import ModerationSettings
from bot.discord.client import CopydeskBot
from bot.service import DraftService
from conftest import rows
from support.discord_harness import finished, start_bot, stop_bot
from support.fake_discord import FakeDiscord, Interaction

AD = {"product": "a solar lantern", "audience": "campers", "tone": "playful"}


@pytest.fixture
async def bot(fake: FakeDiscord, service: DraftService) -> AsyncIterator[CopydeskBot]:
    review = ModerationSettings(review_channel_id=fake.guild.channel("moderation").id)
    running, task = await start_bot(fake, service, review)
    yield running
    await stop_bot(running, task)


class Twice:
    """Deliver an interaction, then the same again: after its answer, or at once while it is handled.

    Then a third member's `/privacy show` is answered: events are handled in order and every claim is
    a write in turn, so by then the repeat has acted, or been dropped.
    """

    def __init__(self, fake: FakeDiscord, concurrently: bool) -> None:
        self.fake, self.concurrently = fake, concurrently

    async def __call__(self, deliver: Callable[[], Awaitable[Interaction]]) -> Interaction:
        interaction = await deliver()
        if not self.concurrently:
            await interaction.wait_for_response(timeout=60)
        await self.fake.redeliver(interaction)
        await interaction.wait_for_response(timeout=60)
        later = await self.fake.invoke_command("privacy", {}, subcommand="show", user=self.fake.guild.member("member9"))
        await later.wait_for_response(timeout=60)
        return interaction


def count(database: Path, table: str) -> int:
    return int(rows(database, f"SELECT count(*) FROM {table}")[0][0])


@pytest.mark.parametrize("concurrently", [False, True], ids=["after-the-answer", "at-once"])
async def test_every_kind_of_interaction_delivered_twice_acts_once(
    fake: FakeDiscord, bot: CopydeskBot, tmp_path: Path, concurrently: bool,
) -> None:
    database = tmp_path / "data" / "copydesk.sqlite3"
    twice = Twice(fake, concurrently)
    alice, mia = fake.guild.member("alice"), fake.guild.member("mia")

    command = await twice(lambda: fake.invoke_command("draft", AD, subcommand="ad", user=alice))
    message = await command.wait_for_original(finished, timeout=90)
    assert count(database, "drafts") == 1
    [(draft_id,)] = rows(database, "SELECT id FROM drafts")

    target = await fake.post_user_message("The meeting moved to Friday at ten.", user=mia)
    summary = await twice(lambda: fake.invoke_message_command("Summarize", target, user=alice))
    await summary.wait_for_original(finished, timeout=90)
    assert count(database, "drafts") == 2

    regenerate = await twice(lambda: fake.click_button(message, f"copydesk:regenerate:{draft_id}", user=alice))
    await regenerate.wait_for_original(finished, timeout=90)
    assert count(database, "drafts") == 3

    await twice(lambda: fake.click_button(message, f"copydesk:rate:{draft_id}:up", user=mia))
    assert count(database, "ratings") == 1

    opened = await fake.click_button(message, f"copydesk:improve:{draft_id}", user=mia)
    form = (await opened.wait_for_response())["data"]["custom_id"]
    await twice(lambda: fake.submit_modal(form, {"text": "Light for every night out."}, user=mia))
    assert count(database, "improvements") == 1

    opened = await fake.click_button(message, f"copydesk:flag:{draft_id}", user=alice)
    form = (await opened.wait_for_response())["data"]["custom_id"]
    await twice(lambda: fake.submit_modal(form, {"reason": "promises too much"}, user=alice))
    assert count(database, "flags") == 1
    [(flag_id,)] = rows(database, "SELECT id FROM flags")
    post = await fake.wait_for(lambda: next((m for m in fake.channel_messages(fake.guild.channel("moderation"))
                                             if m.get("components")), None))
    await twice(lambda: fake.click_button(post, f"copydesk:mod:dismiss:{flag_id}", user=mia))
    assert rows(database, "SELECT action FROM moderation_actions") == [("dismiss",)]

    shown = await fake.invoke_command("privacy", {}, subcommand="show", user=alice)
    consent: dict[str, Any] = await shown.wait_for_response()
    allow = fake.messages[shown.original_id] if shown.original_id else consent["data"]
    await twice(lambda: fake.click_button(allow, f"copydesk:privacy:allow:{alice.user.id}", user=alice))
    assert count(database, "consents") == 1

    asked = await fake.invoke_command("privacy", {}, subcommand="delete", user=mia)
    await asked.wait_for_response()
    confirm = fake.messages[asked.original_id] if asked.original_id else {}
    await twice(lambda: fake.click_button(confirm, f"copydesk:privacy:erase:{mia.user.id}", user=mia))
    assert count(database, "erasures") == 1

    answered = [i for i in fake.interactions.values() if i.response is not None]
    assert len(answered) == len(fake.interactions), "each interaction was answered, once"
