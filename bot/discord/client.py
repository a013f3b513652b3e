"""The bot client: default intents only, the command tree, and buttons that survive restarts."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot.app import open_service
from bot.config import ModerationSettings, Settings
from bot.discord.commands import draft_group, summarize, summarize_message, write_group
from bot.discord.errors import report_command_error
from bot.discord.feedback import FEEDBACK_BUTTONS
from bot.discord.privacy import PRIVACY_BUTTONS, privacy_group
from bot.discord.review import DecideButton, review, status
from bot.service import DraftService


class CopydeskBot(discord.Client):
    """Holds the service; every command and button reaches it through `interaction.client`."""

    def __init__(self, service: DraftService | None, moderation: ModerationSettings = ModerationSettings(),
                 **options: Any) -> None:
        # No privileged intent: interactions carry everything the commands need.
        super().__init__(intents=discord.Intents.default(), allowed_mentions=discord.AllowedMentions.none(),
                         **options)
        self.service = service
        self.moderator_roles = moderation.roles
        self.moderator_channel_id = moderation.review_channel_id
        self.tree = app_commands.CommandTree(self)
        self.tree.on_error = report_command_error
        for command in (draft_group, write_group, summarize, summarize_message, review, status, privacy_group):
            self.tree.add_command(command)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(*FEEDBACK_BUTTONS, DecideButton, *PRIVACY_BUTTONS)

    def require_service(self) -> DraftService:
        if self.service is None:
            raise RuntimeError("the bot was started without a service")
        return self.service


async def publish_commands(token: str, guild_id: int | None = None) -> list[app_commands.AppCommand]:
    """Sync the command tree with Discord: globally, or to one guild (instant, for testing)."""
    async with CopydeskBot(service=None) as bot:
        await bot.login(token)
        target = discord.Object(guild_id) if guild_id else None
        if target is not None:
            bot.tree.copy_global_to(guild=target)
        return await bot.tree.sync(guild=target)


class ShardedCopydeskBot(CopydeskBot, discord.AutoShardedClient):
    """The same bot over several gateway connections (`discord.shards`), as Discord requires past 2,500 servers."""


async def run_bot(settings: Settings, token: str, **options: Any) -> None:
    """Load the model, open the database, and serve Discord until the bot is closed or cancelled."""
    sharding = settings.discord.client_options()
    bot_class = ShardedCopydeskBot if sharding else CopydeskBot
    async with (open_service(settings, serve_metrics=True) as service,
                bot_class(service, settings.moderation, **sharding, **options) as bot):
        await bot.start(token)
