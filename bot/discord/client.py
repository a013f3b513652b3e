"""The bot client: default intents only, the command tree, and buttons that survive restarts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import discord
from discord import app_commands

from bot.app import open_service
from bot.config import ModerationSettings, Settings
from bot.discord.commands import draft_group, summarize, summarize_message, write_group
from bot.discord.errors import report_command_error, tell
from bot.discord.feedback import FEEDBACK_BUTTONS
from bot.discord.privacy import PRIVACY_BUTTONS, privacy_group
from bot.discord.review import DecideButton, review, status
from bot.service import DraftService

BUTTONS = (*FEEDBACK_BUTTONS, DecideButton, *PRIVACY_BUTTONS)
NOT_OURS = "⚠️ That button does not work (any more). Nothing was changed."


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
        self.add_dynamic_items(*BUTTONS)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """A click none of our buttons will take gets an answer rather than Discord's "This interaction failed".

        discord.py hands a click to a button only when its custom_id fits one of our templates and the
        message still shows it; otherwise (a forged id, a button since removed from its message, one
        from a long-gone version) it drops the click without a word.
        """
        if interaction.type is not discord.InteractionType.component:
            return
        custom_id = str((interaction.data or {}).get("custom_id", ""))
        ours = any(button.__discord_ui_compiled_template__.fullmatch(custom_id) for button in BUTTONS)
        shown = interaction.message is not None and custom_id in _custom_ids(interaction.message.components)
        if not (ours and shown):
            await tell(interaction, NOT_OURS)

    def require_service(self) -> DraftService:
        if self.service is None:
            raise RuntimeError("the bot was started without a service")
        return self.service


def _custom_ids(components: Sequence[Any]) -> Iterator[str | None]:
    for component in components:
        yield getattr(component, "custom_id", None)
        yield from _custom_ids(getattr(component, "children", ()))


async def publish_commands(token: str, guild_id: int | None = None) -> list[app_commands.AppCommand]:
    """Sync the command tree with Discord: globally, or to one guild (instant, for testing)."""
    async with CopydeskBot(service=None) as bot:
        await bot.login(token)
        target = discord.Object(guild_id) if guild_id else None
        if target is not None:
            bot.tree.copy_global_to(guild=target)
        return await bot.tree.sync(guild=target)


async def run_bot(settings: Settings, token: str, **options: Any) -> None:
    """Load the model, open the database, and serve Discord until the bot is closed or cancelled."""
    async with open_service(settings) as service, CopydeskBot(service, settings.moderation, **options) as bot:
        await bot.start(token)
