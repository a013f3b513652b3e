"""The buttons under a finished draft: 👍, 👎, Regenerate, Improve, Flag.

Each is a `DynamicItem` whose `custom_id` carries the draft id, so buttons on old messages keep
working after the bot restarts. Improve and Flag open a modal.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import discord

from bot.discord.context import member_of, service_of
from bot.discord.errors import in_time, report, tell
from bot.discord.review import is_moderator, post_for_review

FEEDBACK_MAX_CHARS = 4000


def _draft_id(match: re.Match[str]) -> int:
    return int(match["draft"])


class RateButton(discord.ui.DynamicItem[discord.ui.Button], template=r"copydesk:rate:(?P<draft>\d{1,18}):(?P<vote>up|down)"):
    def __init__(self, draft_id: int, up: bool) -> None:
        self.draft_id, self.up = draft_id, up
        super().__init__(discord.ui.Button(
            emoji="👍" if up else "👎", style=discord.ButtonStyle.secondary,
            custom_id=f"copydesk:rate:{draft_id}:{'up' if up else 'down'}",
        ))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: Any, match: re.Match[str]) -> RateButton:
        return cls(_draft_id(match), match["vote"] == "up")

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            ups, downs = await in_time(interaction, service_of(interaction).rate(member_of(interaction), self.draft_id, self.up))
        except Exception as error:  # noqa: BLE001 - reported to the member, logged if ours
            await report(interaction, error, self.draft_id)
            return
        await tell(interaction, f"Thanks! Draft #{self.draft_id} now has 👍 {ups} · 👎 {downs}.")


class _DraftButton(discord.ui.DynamicItem[discord.ui.Button], template=r"(?!)"):
    """A button about one draft: its `custom_id` is `copydesk:<action>:<draft id>`."""

    action: ClassVar[str]
    label: ClassVar[str]
    emoji: ClassVar[str]
    style: ClassVar[discord.ButtonStyle]

    def __init_subclass__(cls, *, action: str, **kwargs: Any) -> None:
        super().__init_subclass__(template=rf"copydesk:{action}:(?P<draft>\d{{1,18}})", **kwargs)
        cls.action = action

    def __init__(self, draft_id: int) -> None:
        self.draft_id = draft_id
        super().__init__(discord.ui.Button(label=self.label, emoji=self.emoji, style=self.style,
                                           custom_id=f"copydesk:{self.action}:{draft_id}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: Any, match: re.Match[str]) -> _DraftButton:
        return cls(_draft_id(match))


class RegenerateButton(_DraftButton, action="regenerate"):
    label, emoji, style = "Regenerate", "🔁", discord.ButtonStyle.primary

    async def callback(self, interaction: discord.Interaction) -> None:
        # drafting renders these buttons, so it is imported late
        from bot.discord.drafting import stream_new_draft

        await interaction.response.defer(thinking=True)
        await stream_new_draft(interaction, service_of(interaction).regenerate(member_of(interaction), self.draft_id))


class ImproveButton(_DraftButton, action="improve"):
    label, emoji, style = "Improve", "✏️", discord.ButtonStyle.secondary

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(ImproveModal(self.draft_id))


class FlagButton(_DraftButton, action="flag"):
    label, emoji, style = "Flag", "🚩", discord.ButtonStyle.danger

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(FlagModal(self.draft_id))


class CancelButton(_DraftButton, action="cancel"):
    """Shown while a draft waits or streams: its member (or a moderator) can stop it."""

    label, emoji, style = "Cancel", "✖️", discord.ButtonStyle.secondary

    async def callback(self, interaction: discord.Interaction) -> None:
        try:
            await in_time(interaction, service_of(interaction).withdraw(member_of(interaction), self.draft_id,
                                                                       as_moderator=is_moderator(interaction)))
        except Exception as error:  # noqa: BLE001 - reported to the member, logged if ours
            await report(interaction, error, self.draft_id)
            return
        await tell(interaction, f"Cancelling draft #{self.draft_id}.")


def cancel_view(draft_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(CancelButton(draft_id))
    return view


class ImproveModal(discord.ui.Modal, title="Write a better version"):
    text: discord.ui.TextInput = discord.ui.TextInput(
        label="Your improved version", style=discord.TextStyle.paragraph, max_length=FEEDBACK_MAX_CHARS,
        custom_id="text",
    )

    def __init__(self, draft_id: int) -> None:
        super().__init__(custom_id=f"copydesk:improve-modal:{draft_id}")
        self.draft_id = draft_id

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await in_time(interaction, service_of(interaction).improve(member_of(interaction), self.draft_id, self.text.value))
        await tell(interaction, f"Saved your version of draft #{self.draft_id} — thank you, it is the best "
                                "training data there is.")

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        await report(interaction, error, self.draft_id)


class FlagModal(discord.ui.Modal, title="Flag this draft"):
    reason: discord.ui.TextInput = discord.ui.TextInput(
        label="What is wrong with it?", style=discord.TextStyle.paragraph, max_length=1000, custom_id="reason",
    )

    def __init__(self, draft_id: int) -> None:
        super().__init__(custom_id=f"copydesk:flag-modal:{draft_id}")
        self.draft_id = draft_id

    async def on_submit(self, interaction: discord.Interaction) -> None:
        flag_id = await in_time(interaction, service_of(interaction).flag(member_of(interaction), self.draft_id,
                                                                          self.reason.value))
        await tell(interaction, f"Draft #{self.draft_id} is flagged for review. Thank you.")
        await post_for_review(interaction.client, flag_id)

    async def on_error(self, interaction: discord.Interaction, error: Exception) -> None:
        await report(interaction, error, self.draft_id)


FEEDBACK_BUTTONS = (RateButton, RegenerateButton, ImproveButton, FlagButton, CancelButton)


def feedback_view(draft_id: int) -> discord.ui.View:
    """The buttons for a finished draft; no timeout, since the ids carry all the state."""
    view = discord.ui.View(timeout=None)
    for item in (RateButton(draft_id, True), RateButton(draft_id, False), RegenerateButton(draft_id),
                 ImproveButton(draft_id), FlagButton(draft_id)):
        view.add_item(item)
    return view
