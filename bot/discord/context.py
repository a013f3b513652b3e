"""Who is acting and which service serves them, read off an interaction."""

from __future__ import annotations

import discord

from bot.service import DraftService, Member


def member_of(interaction: discord.Interaction) -> Member:
    return Member(
        str(interaction.user.id),
        guild_id=str(interaction.guild_id) if interaction.guild_id else None,
        channel_id=str(interaction.channel_id) if interaction.channel_id else None,
    )


def service_of(interaction: discord.Interaction) -> DraftService:
    return interaction.client.require_service()  # type: ignore[attr-defined]
