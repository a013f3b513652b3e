"""How errors reach members: theirs get a short explanation, ours a polite note and a log line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

import discord

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


class DraftFailed(Exception):
    """A failure while serving a draft, raised on to the one error path so it names the draft."""

    def __init__(self, draft_id: int) -> None:
        super().__init__(f"draft {draft_id} failed")
        self.draft_id = draft_id


async def report(interaction: discord.Interaction, error: BaseException, draft_id: int | None = None) -> None:
    """Explain a member's mistake, or log our own with the draft id and apologise without details.

    The one error path of every command, button and form (see `bot.discord.tree`, `bot.discord.components`).
    """
    if isinstance(error, DraftFailed) and error.__cause__ is not None:
        draft_id = error.draft_id
        error = error.__cause__
    if isinstance(error, MEMBER_ERRORS):
        await tell(interaction, f"⚠️ {error}")
        return
    log.error("interaction %s failed (draft %s)", interaction.id, draft_id, exc_info=error)
    await tell(interaction, OUR_FAULT.format(where=f" with draft #{draft_id}" if draft_id else ""))


async def reporting(interaction: discord.Interaction, draft_id: int | None, work: Awaitable[T]) -> T | None:
    """Await a button's or form's work; should it fail, take the one error path and return None."""
    try:
        return await work
    except Exception as error:  # noqa: BLE001 - reported to the member, logged if ours
        await report(interaction, error, draft_id)
        return None
