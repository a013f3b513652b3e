"""Slash commands `/draft ad`, `/write blog`, `/summarize`, and the message context menu "Summarize".

Options, limits and choices come from the task catalogue, so Discord's form enforces the same
rules as the service (which checks them again: a client can send anything).
"""

from __future__ import annotations

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from bot.discord.drafting import start_draft
from generation import TASKS


def _limit(task: str, field: str) -> int:
    return next(f.max_chars for f in TASKS[task].fields if f.name == field)


def _choices(task: str, field: str) -> list[Choice[str]]:
    return [Choice(name=value, value=value) for f in TASKS[task].fields if f.name == field for value in f.choices]


draft_group = app_commands.Group(name="draft", description="Draft marketing copy", guild_only=True)
write_group = app_commands.Group(name="write", description="Write longer content", guild_only=True)


@draft_group.command(name="ad", description=TASKS["ad"].description)
@app_commands.describe(product="What is being advertised", audience="Who the ad speaks to", tone="The voice of the ad")
@app_commands.choices(tone=_choices("ad", "tone"))
async def draft_ad(
    interaction: discord.Interaction,
    product: Range[str, 1, _limit("ad", "product")],
    audience: Range[str, 1, _limit("ad", "audience")],
    tone: str | None = None,
) -> None:
    await start_draft(interaction, "ad", {"product": product, "audience": audience, "tone": tone})


@write_group.command(name="blog", description=TASKS["blog"].description)
@app_commands.describe(topic="What the post is about", audience="Who reads it", tone="The voice of the post",
                       length="How long the post is")
@app_commands.choices(tone=_choices("blog", "tone"), length=_choices("blog", "length"))
async def write_blog(
    interaction: discord.Interaction,
    topic: Range[str, 1, _limit("blog", "topic")],
    audience: Range[str, 1, _limit("blog", "audience")] | None = None,
    tone: str | None = None,
    length: str | None = None,
) -> None:
    await start_draft(interaction, "blog", {"topic": topic, "audience": audience, "tone": tone, "length": length})


@app_commands.command(name="summarize", description=TASKS["summary"].description)
@app_commands.guild_only()
@app_commands.describe(text="The text to summarize", style="A paragraph or bullet points")
@app_commands.choices(style=_choices("summary", "style"))
async def summarize(
    interaction: discord.Interaction, text: Range[str, 1, _limit("summary", "text")], style: str | None = None
) -> None:
    await start_draft(interaction, "summary", {"text": text, "style": style})


@app_commands.context_menu(name="Summarize")
@app_commands.guild_only()
async def summarize_message(interaction: discord.Interaction, message: discord.Message) -> None:
    # The interaction carries the message, so no message-content intent is needed.
    await start_draft(interaction, "summary", {"text": message.content})
