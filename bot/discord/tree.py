"""The bot's command tree: each command acts once per interaction, and whatever it raises takes the one
error path."""

from __future__ import annotations

from discord import app_commands

from bot.discord.context import CopydeskClient, Interaction
from bot.discord.deliveries import first_delivery
from bot.discord.errors import report, reporting


class CommandTree(app_commands.CommandTree[CopydeskClient]):
    async def interaction_check(self, interaction: Interaction) -> bool:
        return bool(await reporting(interaction, None, first_delivery(interaction)))

    async def on_error(self, interaction: Interaction, error: app_commands.AppCommandError) -> None:
        await report(interaction, error.original if isinstance(error, app_commands.CommandInvokeError) else error)
