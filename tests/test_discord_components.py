"""Buttons and forms end to end: a button works by being defined, and every button and form answers
a failure, ours or the member's, through the one error path. Real discord.py against the fake Discord."""

from __future__ import annotations

import re
from typing import Any

import discord
import pytest

from bot.discord.client import CopydeskBot
from bot.discord.components import Button
from bot.discord.context import Interaction
from bot.discord.drafting import feedback_view
from bot.discord.errors import tell
from bot.discord.privacy import consent_view
from bot.service import DraftService
from support.discord_harness import DEFERRED, EPHEMERAL, start_bot, stop_bot
from support.fake_discord import FakeDiscord

OUR_FAULT = "Sorry — something went wrong on our side"
MISSING_DRAFT = 987654


async def post(bot: CopydeskBot, fake: FakeDiscord, view: discord.ui.View) -> dict[str, Any]:
    """A message of the bot's with these buttons, as the fake stores it."""
    sent = await bot.get_partial_messageable(fake.guild.channels[0].id).send("buttons", view=view)
    return fake.messages[sent.id]


async def broken(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("the service broke")


async def test_a_button_class_works_by_being_defined(fake: FakeDiscord, service: DraftService) -> None:
    pressed: list[int] = []

    class ProbeButton(Button, template=r"copydesk:probe:(?P<number>\d{1,9})"):
        def __init__(self, number: int) -> None:
            self.number = number
            super().__init__(discord.ui.Button(label="Probe", custom_id=f"copydesk:probe:{number}"))

        @classmethod
        async def from_custom_id(cls, interaction: discord.Interaction[Any], item: Any,
                                 match: re.Match[str]) -> ProbeButton:
            return cls(int(match["number"]))

        async def on_click(self, interaction: Interaction) -> None:
            pressed.append(self.number)
            await tell(interaction, f"probe {self.number} pressed")

    try:
        bot, running = await start_bot(fake, service)
        try:
            view = discord.ui.View(timeout=None)
            view.add_item(ProbeButton(7))
            message = await post(bot, fake, view)
            click = await fake.click_button(message, "copydesk:probe:7")
            assert (await click.wait_for_response())["data"]["content"] == "probe 7 pressed"
            assert pressed == [7]
        finally:
            await stop_bot(bot, running)
    finally:
        Button.registered.remove(ProbeButton)


async def test_our_failure_in_regenerate_gets_an_apology(
    fake: FakeDiscord, bot: CopydeskBot, service: DraftService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "regenerate", broken)
    message = await post(bot, fake, feedback_view(MISSING_DRAFT))
    click = await fake.click_button(message, f"copydesk:regenerate:{MISSING_DRAFT}")
    assert (await click.wait_for_response())["type"] == DEFERRED
    apology = await fake.wait_for(lambda: click.original if OUR_FAULT in (click.original or {}).get("content", "")
                                  else None)
    assert f"with draft #{MISSING_DRAFT}" in apology["content"] and "broke" not in apology["content"]


async def test_a_members_mistake_in_regenerate_gets_its_message(fake: FakeDiscord, bot: CopydeskBot) -> None:
    message = await post(bot, fake, feedback_view(MISSING_DRAFT))
    click = await fake.click_button(message, f"copydesk:regenerate:{MISSING_DRAFT}")
    assert (await click.wait_for_response())["type"] == DEFERRED
    [note] = await fake.wait_for(lambda: click.followups or None)
    assert note["content"] == f"⚠️ draft {MISSING_DRAFT} does not exist" and note["flags"] & EPHEMERAL
    assert click.original is None, "the thinking… message was taken back"


async def test_our_failure_in_a_privacy_button_gets_an_apology(
    fake: FakeDiscord, bot: CopydeskBot, service: DraftService, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = fake.guild.member("alice")
    monkeypatch.setattr(service.privacy, "set_training_use", broken)
    message = await post(bot, fake, consent_view(alice.user.id, allow=True))
    click = await fake.click_button(message, f"copydesk:privacy:allow:{alice.user.id}", user=alice)
    answer = (await click.wait_for_response())["data"]
    assert answer["content"].startswith(OUR_FAULT) and answer["flags"] == EPHEMERAL


@pytest.mark.parametrize(("failure", "answer"), [
    (broken, f"{OUR_FAULT} with draft #{MISSING_DRAFT}."),
    (None, f"⚠️ draft {MISSING_DRAFT} does not exist"),
])
async def test_a_form_submit_answers_failures(
    fake: FakeDiscord, bot: CopydeskBot, service: DraftService, monkeypatch: pytest.MonkeyPatch,
    failure: Any, answer: str,
) -> None:
    if failure is not None:
        monkeypatch.setattr(service, "improve", failure)
    message = await post(bot, fake, feedback_view(MISSING_DRAFT))
    opened = await fake.click_button(message, f"copydesk:improve:{MISSING_DRAFT}")
    modal = await opened.wait_for_response()
    submitted = await fake.submit_modal(modal["data"]["custom_id"], {"text": "A better one."})
    content = (await submitted.wait_for_response())["data"]["content"]
    assert content.startswith(answer)
