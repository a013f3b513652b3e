"""The bot client: default intents only, the command tree, and buttons that survive restarts."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator, Sequence
from typing import Any

import discord
from discord import app_commands

from bot.app import open_service
from bot.config import ExportSettings, ModerationSettings, Settings
from bot.discord.commands import summarize_message, task_commands
from bot.discord.components import Button, is_ours
from bot.discord.context import CopydeskClient
from bot.discord.drafting import NO_MENTIONS, interrupted_notice
from bot.discord.errors import tell
from bot.discord.experiments import experiment_group
from bot.discord.export import export
from bot.discord.privacy import privacy_group
from bot.discord.review import post_for_review, review, status
from bot.discord.stats import stats
from bot.discord.templates import templates_group
from bot.discord.tree import CommandTree
from bot.discord.versions import models_group
from bot.service import DraftService
from generation import TASKS

log = logging.getLogger("copydesk.discord")
FINAL_EDIT_WAIT_S = 15.0  # after interrupting the drafts at shutdown: for their last message edits
NOT_OURS = "⚠️ That button does not work (any more). Nothing was changed."


class CopydeskBot(CopydeskClient):
    """The bot: the commands (drafting ones built from the task catalogue), every registered button,
    and its start and shutdown."""

    def __init__(self, service: DraftService | None, moderation: ModerationSettings = ModerationSettings(),
                 exports: ExportSettings = ExportSettings(), **options: Any) -> None:
        super().__init__(service, moderation, exports, **options)
        self.tree = CommandTree(self)
        for command in (*task_commands(TASKS.values()), summarize_message, review, status, stats, privacy_group,
                        export, models_group, experiment_group, templates_group):
            self.tree.add_command(command)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(*Button.registered)
        if self.service is not None:
            await self.announce_interruptions()

    async def announce_interruptions(self) -> None:
        """Tell the members whose drafts a previous run left unfinished, in the channel they asked in.

        The notice becomes the draft's message, so each is told once, even if this run dies too.
        """
        service = self.require_service()
        for draft in await service.unannounced_interruptions():
            channel = self.get_partial_messageable(int(draft.channel_id or 0))
            try:
                message = await channel.send(interrupted_notice(draft), allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as error:  # e.g. the channel is gone, or the bot may not post there
                log.warning("could not tell the member of interrupted draft %s: %s", draft.id, error)
                continue
            await service.record_message(draft.id, str(message.channel.id), str(message.id))

    async def shut_down(self, grace_s: float) -> None:
        """Take no new drafts, give those running `grace_s` seconds to finish, interrupt the rest (their
        members see it in their message), then close; the database is closed after the bot."""
        service = self.require_service()
        service.stop_taking_drafts()
        log.info("shutting down: %d draft(s) in progress, %g s to finish", len(self._drafting), grace_s)
        if self._drafting:
            _, late = await asyncio.wait(set(self._drafting), timeout=grace_s)
            if late:
                service.interrupt_all()
                await asyncio.wait(late, timeout=FINAL_EDIT_WAIT_S)
        await self.close()

    async def post_for_review(self, flag_id: int) -> None:
        await post_for_review(self, flag_id)

    async def on_interaction(self, interaction: discord.Interaction[CopydeskBot]) -> None:
        """A click none of our buttons will take gets an answer rather than Discord's "This interaction failed".

        discord.py hands a click to a button only when its custom_id fits one of our templates and the
        message still shows it; otherwise (a forged id, a button since removed from its message, one
        from a long-gone version) it drops the click without a word.
        """
        if interaction.type is not discord.InteractionType.component:
            return
        custom_id = str(dict(interaction.data or {}).get("custom_id", ""))
        ours = is_ours(custom_id)
        shown = interaction.message is not None and custom_id in _custom_ids(interaction.message.components)
        if not (ours and shown):
            await tell(interaction, NOT_OURS)


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


class ShardedCopydeskBot(CopydeskBot, discord.AutoShardedClient):
    """The same bot over several gateway connections (`discord.shards`), as Discord requires past 2,500 servers."""


async def run_bot(settings: Settings, token: str, **options: Any) -> None:
    """Load the model, open the database, and serve Discord until the bot is closed, cancelled or sent SIGTERM."""
    sharding = settings.discord.client_options()
    bot_class = ShardedCopydeskBot if sharding else CopydeskBot
    async with (open_service(settings, as_bot=True) as service,
                bot_class(service, settings.moderation, settings.export, **sharding, **options) as bot):
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []

        def on_sigterm() -> None:
            if not stopping:
                stopping.append(loop.create_task(bot.shut_down(settings.engine.shutdown_grace_s)))

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            await bot.start(token)
            for task in stopping:
                await task
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
