"""`/models` for moderators: which model version writes the drafts, and switching it, logged.

The switch is the same use case as `copydesk models serve`: new drafts go to the version at once,
drafts being written finish on theirs.
"""

from __future__ import annotations

import discord
from discord import app_commands

from bot.discord.context import Interaction, member_of, require_moderator, service_of
from bot.discord.errors import tell
from bot.discord.training import train_version

models_group = app_commands.Group(name="models", description="Moderators: the model versions that write drafts",
                                  guild_only=True,
                                  default_permissions=discord.Permissions(manage_messages=True))


@models_group.command(name="list", description="Moderators: the trained model versions and which one serves")
async def list_versions(interaction: Interaction) -> None:
    if not await require_moderator(interaction):
        return
    versions = service_of(interaction).versions
    lines = [f"Serving: **{await versions.serving()}**"]
    for version in await versions.list():
        lines.append(f"- `{version.name}` — {version.state}, {version.method}, trained {version.created_at:%Y-%m-%d}")
    await tell(interaction, "\n".join(lines))


@models_group.command(name="serve", description="Moderators: send new drafts to this model version (base: no adapter)")
@app_commands.describe(name="The version's name, as /models list shows it, or base")
async def serve_version(interaction: Interaction, name: app_commands.Range[str, 1, 64]) -> None:
    if not await require_moderator(interaction):
        return
    await interaction.response.defer(ephemeral=True, thinking=True)  # opening a version takes seconds
    member = member_of(interaction)
    await service_of(interaction).versions.serve(name, by=member.id, guild_id=member.guild_id)
    await tell(interaction, f"New drafts now come from **{name}**; drafts being written finish on their version.")


models_group.add_command(train_version)
