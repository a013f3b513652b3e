"""The bot client: default intents only, the command tree, and buttons that survive restarts."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.discord.commands import summarize_message, write_group, draft_group, summarize
from bot.discord.errors import report_command_error
from bot.discord.feedback import FEEDBACK_BUTTONS
from bot.service import DraftService


class CopydeskBot(discord.Client):
    """Holds the service; every command and button reaches it through `interaction.client`."""

    def __init__(self, service: DraftService | None) -> None:
        # No privileged intent: interactions carry everything the commands need.
        super().__init__(intents=discord.Intents.default(), allowed_mentions=discord.AllowedMentions.none())
        self.service = service
        self.tree = app_commands.CommandTree(self)
        self.tree.on_error = report_command_error
        for command in (draft_group, write_group, summarize, summarize_message):
            self.tree.add_command(command)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(*FEEDBACK_BUTTONS)

    def require_service(self) -> DraftService:
        if self.service is None:
            raise RuntimeError("the bot was started without a service")
        return self.service
