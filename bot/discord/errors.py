"""How errors reach members: theirs get a short explanation, ours a polite note and a log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

import discord
from discord import app_commands

from bot.errors import MEMBER_ERRORS

log = logging.getLogger("copydesk.discord")

ACK_WITHIN_S = 1.5  # Discord allows 3 s; the rest is margin for the request itself
T = TypeVar("T")
OUR_FAULT = "Sorry — something went wrong on our side{where}. It has been logged; please try again in a moment."


async def tell(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral note, whether or not the interaction was already answered."""
    if interaction.response.is_done():
        await interaction.followup.send(message, ephemeral=True)
    else:
        await interaction.response.send_message(message, ephemeral=True)


async def in_time(interaction: discord.Interaction, work: Awaitable[T]) -> T:
    """Await `work`; should it take longer than ACK_WITHIN_S (a burst of clicks on a busy database),
    acknowledge the interaction first, privately, so Discord does not drop it after its 3 s."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.wait_for(asyncio.shield(task), ACK_WITHIN_S)
    except TimeoutError:
        await interaction.response.defer(ephemeral=True, thinking=True)
        return await task


async def report(interaction: discord.Interaction, error: Exception, draft_id: int | None = None) -> None:
    """Explain a member's mistake, or log our own with the draft id and apologise without details."""
    if isinstance(error, MEMBER_ERRORS):
        await tell(interaction, f"⚠️ {error}")
        return
    log.error("interaction %s failed (draft %s)", interaction.id, draft_id, exc_info=error)
    await tell(interaction, OUR_FAULT.format(where=f" with draft #{draft_id}" if draft_id else ""))


async def report_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    await report(interaction, original, getattr(original, "draft_id", None))
