"""Who is acting and which service serves them, read off an interaction.

`CopydeskClient` is what every command, button and form may read off `interaction.client`; the bot
(`bot.discord.client.CopydeskBot`) adds the commands and hooks on top. It lives here, below every
handler, so that handlers are typed against it without importing the module that imports them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import discord

from bot.config import ExportSettings, ModerationSettings
from bot.discord.errors import tell
from bot.service import DraftService, Member


class CopydeskClient(discord.Client):
    """Holds the service and the settings the handlers need; every handler reaches them through
    `interaction.client`."""

    def __init__(self, service: DraftService | None, moderation: ModerationSettings = ModerationSettings(),
                 exports: ExportSettings = ExportSettings(), **options: Any) -> None:
        # No privileged intent: interactions carry everything the commands need.
        super().__init__(intents=discord.Intents.default(), allowed_mentions=discord.AllowedMentions.none(),
                         **options)
        self.service = service
        self.moderator_roles = moderation.roles
        self.moderator_channel_id = moderation.review_channel_id
        self.export_attachment_mb = exports.discord_attachment_mb
        self.links_allowed_domains = moderation.links_allowed_domains
        self._drafting: set[asyncio.Task[Any]] = set()

    def require_service(self) -> DraftService:
        if self.service is None:
            raise RuntimeError("the bot was started without a service")
        return self.service

    @contextmanager
    def drafting(self) -> Iterator[None]:
        """The current task serves a draft: a shutdown waits for it (or interrupts it) before closing."""
        task = asyncio.current_task()
        if task is not None:
            self._drafting.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._drafting.discard(task)

    async def post_for_review(self, flag_id: int) -> None:
        """Post a new flag to the review channel. The bot implements it with the review module, which
        renders drafts with the buttons that call this, so they reach it through the client."""
        raise NotImplementedError


Interaction = discord.Interaction[CopydeskClient]


def member_of(interaction: Interaction) -> Member:
    return Member(
        str(interaction.user.id),
        guild_id=str(interaction.guild_id) if interaction.guild_id else None,
        channel_id=str(interaction.channel_id) if interaction.channel_id else None,
    )


def service_of(interaction: Interaction) -> DraftService:
    return interaction.client.require_service()


def is_moderator(interaction: Interaction) -> bool:
    """Manage Messages in this channel, or any role the config names (by id or by name).

    Read from the roles and permissions the interaction carries at that moment (roles can change),
    at every command and every click; `default_member_permissions` only hides commands in menus.
    """
    member = interaction.user
    if not isinstance(member, discord.Member):
        return False
    if interaction.permissions.manage_messages:
        return True
    roles = interaction.client.moderator_roles
    return any(str(role.id) in roles or role.name in roles for role in member.roles)


async def require_moderator(interaction: Interaction) -> bool:
    if is_moderator(interaction):
        await service_of(interaction).moderation.seen(member_of(interaction))
        return True
    await tell(interaction, "⚠️ Only moderators can do that.")
    return False
