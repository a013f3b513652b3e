"""The feedback buttons under a finished draft: 👍, 👎, Improve, Flag; and Cancel while it streams.

Each is a `Button` whose `custom_id` carries the draft id, so buttons on old messages keep
working after the bot restarts. Improve and Flag open a form. Regenerate, which streams a new
draft, is with the streaming in `bot.discord.drafting`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import discord

from bot.discord.components import Button, Form
from bot.discord.context import Interaction, is_moderator, member_of, service_of
from bot.discord.errors import in_time, tell

FEEDBACK_MAX_CHARS = 4000


def _draft_id(match: re.Match[str]) -> int:
    return int(match["draft"])


class RateButton(Button, template=r"copydesk:rate:(?P<draft>\d{1,18}):(?P<vote>up|down)"):
    draft_id: int

    def __init__(self, draft_id: int, up: bool) -> None:
        self.draft_id, self.up = draft_id, up
        super().__init__(discord.ui.Button(
            emoji="👍" if up else "👎", style=discord.ButtonStyle.secondary,
            custom_id=f"copydesk:rate:{draft_id}:{'up' if up else 'down'}",
        ))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: Any,
                             match: re.Match[str]) -> RateButton:
        return cls(_draft_id(match), match["vote"] == "up")

    async def on_click(self, interaction: Interaction) -> None:
        ups, downs = await in_time(interaction, service_of(interaction).rate(member_of(interaction), self.draft_id,
                                                                            self.up))
        await tell(interaction, f"Thanks! Draft #{self.draft_id} now has 👍 {ups} · 👎 {downs}.")


class DraftButton(Button):
    """A button about one draft: its `custom_id` is `copydesk:<action>:<draft id>`."""

    action: ClassVar[str]
    label: ClassVar[str]
    emoji: ClassVar[str]
    style: ClassVar[discord.ButtonStyle]
    draft_id: int

    def __init_subclass__(cls, *, action: str, **kwargs: Any) -> None:
        super().__init_subclass__(template=rf"copydesk:{action}:(?P<draft>\d{{1,18}})", **kwargs)
        cls.action = action

    def __init__(self, draft_id: int) -> None:
        self.draft_id = draft_id
        super().__init__(discord.ui.Button(label=self.label, emoji=self.emoji, style=self.style,
                                           custom_id=f"copydesk:{self.action}:{draft_id}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: Any,
                             match: re.Match[str]) -> DraftButton:
        return cls(_draft_id(match))


class ImproveButton(DraftButton, action="improve"):
    label, emoji, style = "Improve", "✏️", discord.ButtonStyle.secondary

    async def on_click(self, interaction: Interaction) -> None:
        await interaction.response.send_modal(ImproveForm(self.draft_id))


class FlagButton(DraftButton, action="flag"):
    label, emoji, style = "Flag", "🚩", discord.ButtonStyle.danger

    async def on_click(self, interaction: Interaction) -> None:
        await interaction.response.send_modal(FlagForm(self.draft_id))


class CancelButton(DraftButton, action="cancel"):
    """Shown while a draft waits or streams: its member (or a moderator) can stop it."""

    label, emoji, style = "Cancel", "✖️", discord.ButtonStyle.secondary

    async def on_click(self, interaction: Interaction) -> None:
        await in_time(interaction, service_of(interaction).withdraw(member_of(interaction), self.draft_id,
                                                                   as_moderator=is_moderator(interaction)))
        await tell(interaction, f"Cancelling draft #{self.draft_id}.")


def cancel_view(draft_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(draft_id))
    return view


class ImproveForm(Form, title="Write a better version"):
    draft_id: int
    text: discord.ui.TextInput[ImproveForm] = discord.ui.TextInput(
        label="Your improved version", style=discord.TextStyle.paragraph, max_length=FEEDBACK_MAX_CHARS,
        custom_id="text",
    )

    def __init__(self, draft_id: int) -> None:
        super().__init__(draft_id, custom_id=f"copydesk:improve-modal:{draft_id}")

    async def submit(self, interaction: Interaction) -> None:
        await in_time(interaction, service_of(interaction).improve(member_of(interaction), self.draft_id,
                                                                  self.text.value))
        await tell(interaction, f"Saved your version of draft #{self.draft_id} — thank you, it is the best "
                                "training data there is.")


class FlagForm(Form, title="Flag this draft"):
    draft_id: int
    reason: discord.ui.TextInput[FlagForm] = discord.ui.TextInput(
        label="What is wrong with it?", style=discord.TextStyle.paragraph, max_length=1000, custom_id="reason",
    )

    def __init__(self, draft_id: int) -> None:
        super().__init__(draft_id, custom_id=f"copydesk:flag-modal:{draft_id}")

    async def submit(self, interaction: Interaction) -> None:
        flag_id = await in_time(interaction, service_of(interaction).flag(member_of(interaction), self.draft_id,
                                                                          self.reason.value))
        await tell(interaction, f"Draft #{self.draft_id} is flagged for review. Thank you.")
        await interaction.client.post_for_review(flag_id)
