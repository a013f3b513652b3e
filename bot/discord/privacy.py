"""`/privacy show` and `/privacy delete`: what is stored about a member, their consent, and erasure.

Every answer is private (ephemeral). The buttons name the member they belong to in their
`custom_id`, and only that member can use them.
"""

from __future__ import annotations

import re
from typing import Any

import discord
from discord import app_commands

from bot.discord.components import Button
from bot.discord.context import Interaction, member_of, service_of
from bot.discord.errors import tell

privacy_group = app_commands.Group(name="privacy", description="What copydesk stores about you, and your choices")


@privacy_group.command(name="show", description="What is stored about you, and whether it may train models")
async def show(interaction: Interaction) -> None:
    summary = await service_of(interaction).privacy.summary(member_of(interaction))
    counts = ", ".join(f"{count} {kind}" for kind, count in summary.stored.items())
    use = "may" if summary.training_use else "may **not**"
    source = "your choice" if summary.chosen else "this server's default"
    await interaction.response.send_message(
        f"Stored about you: {counts}.\nYour drafts {use} be used as training data ({source}).",
        view=consent_view(interaction.user.id, not summary.training_use), ephemeral=True)


@privacy_group.command(name="delete", description="Erase your prompts, drafts, ratings, improvements and flags")
async def delete(interaction: Interaction) -> None:
    view = discord.ui.View(timeout=None)
    view.add_item(EraseButton(interaction.user.id))
    await interaction.response.send_message(
        "This erases every prompt, draft, rating, improvement and flag of yours, now and from every later "
        "export. It cannot be undone. Continue?", view=view, ephemeral=True)


def consent_view(user_id: int, allow: bool) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ConsentButton(user_id, allow))
    return view


class OwnButton(Button):
    """A button only the member it was made for may press."""

    user_id: int

    async def check(self, interaction: Interaction) -> bool:
        if interaction.user.id == self.user_id:
            return True
        await tell(interaction, "⚠️ That button belongs to someone else.")
        return False


class ConsentButton(OwnButton, template=r"copydesk:privacy:(?P<choice>allow|deny):(?P<user>\d{1,20})"):
    def __init__(self, user_id: int, allow: bool) -> None:
        self.user_id, self.allow = user_id, allow
        super().__init__(discord.ui.Button(
            label="Allow training use" if allow else "Stop training use",
            style=discord.ButtonStyle.success if allow else discord.ButtonStyle.secondary,
            custom_id=f"copydesk:privacy:{'allow' if allow else 'deny'}:{user_id}",
        ))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: Any,
                             match: re.Match[str]) -> ConsentButton:
        return cls(int(match["user"]), match["choice"] == "allow")

    async def on_click(self, interaction: Interaction) -> None:
        await service_of(interaction).privacy.set_training_use(member_of(interaction), self.allow)
        await interaction.response.edit_message(
            content="Your drafts may now be used as training data." if self.allow
            else "Your drafts will not be used as training data.",
            view=consent_view(self.user_id, not self.allow))


class EraseButton(OwnButton, template=r"copydesk:privacy:erase:(?P<user>\d{1,20})"):
    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        super().__init__(discord.ui.Button(label="Erase my data", style=discord.ButtonStyle.danger,
                                           custom_id=f"copydesk:privacy:erase:{user_id}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: Any,
                             match: re.Match[str]) -> EraseButton:
        return cls(int(match["user"]))

    async def on_click(self, interaction: Interaction) -> None:
        removed = await service_of(interaction).privacy.erase(member_of(interaction))
        counts = ", ".join(f"{count} {kind}" for kind, count in removed.items())
        await interaction.response.edit_message(content=f"Done. Removed {counts}.", view=None)
