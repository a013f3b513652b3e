"""Moderation in Discord: the review channel, `/review`, `/status`, and Uphold / Dismiss.

Moderator rights (`bot.discord.context.is_moderator`) are checked on the bot's side at every
command and every click; `default_member_permissions` only hides the command in Discord's menus.
"""

from __future__ import annotations

import re
from typing import Any

import discord
from discord import app_commands

from bot.discord.components import Button
from bot.discord.context import CopydeskClient, Interaction, member_of, require_moderator, service_of
from bot.discord.drafting import feedback_view, final_message
from bot.discord.errors import tell
from bot.discord.model_text import shown
from bot.discord.safe_text import reveal
from bot.discord.variants import final_content
from generation.safety import redact_code_words
from storage import Flag

NO_MENTIONS = discord.AllowedMentions.none()
REMOVED = "🛑 This draft was removed by a moderator."


def describe_flag(flag: Flag, allowed_domains: tuple[str, ...], limit: int = 1500) -> str:
    """The flag for moderators: the draft's inputs (another member's message, for a summary) and output
    with their links shown for what they are, hidden characters escaped, code words redacted."""
    draft = flag.draft
    inputs = ", ".join(f"{name}: {reveal(shown(value, allowed_domains), 200)}" for name, value in draft.inputs.items())
    who = "automatic check" if flag.member_id is None else f"<@{flag.member_id}>"
    return (
        f"**Flag #{flag.id}** on draft #{draft.id} ({draft.task}) by <@{draft.author_id}> — raised by {who}\n"
        f"**Reason:** {reveal(flag.reason, 300)}\n**Inputs:** {inputs}\n"
        f">>> {reveal(shown(redact_code_words(draft.output, draft.system_prompt), allowed_domains), limit) or '(empty)'}"
    )


def decision_view(flag_id: int) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(DecideButton(flag_id, uphold=True))
    view.add_item(DecideButton(flag_id, uphold=False))
    return view


async def post_for_review(client: CopydeskClient, flag_id: int) -> None:
    """Post a new flag to the review channel, if one is configured."""
    channel_id = client.moderator_channel_id
    if not channel_id:
        return
    flag = await client.require_service().moderation.flag(flag_id)
    await client.get_partial_messageable(channel_id).send(
        describe_flag(flag, client.links_allowed_domains), view=decision_view(flag_id), allowed_mentions=NO_MENTIONS,
        suppress_embeds=True)


class DecideButton(Button, template=r"copydesk:mod:(?P<verdict>uphold|dismiss):(?P<flag>\d{1,18})"):
    def __init__(self, flag_id: int, uphold: bool) -> None:
        self.flag_id, self.uphold = flag_id, uphold
        verdict = "uphold" if uphold else "dismiss"
        super().__init__(discord.ui.Button(
            label="Uphold (remove draft)" if uphold else "Dismiss",
            style=discord.ButtonStyle.danger if uphold else discord.ButtonStyle.secondary,
            custom_id=f"copydesk:mod:{verdict}:{flag_id}",
        ))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: Any,
                             match: re.Match[str]) -> DecideButton:
        return cls(int(match["flag"]), match["verdict"] == "uphold")

    async def check(self, interaction: Interaction) -> bool:
        return await require_moderator(interaction)

    async def on_click(self, interaction: Interaction) -> None:
        flag = await service_of(interaction).moderation.decide(member_of(interaction), self.flag_id,
                                                               uphold=self.uphold)
        await apply_decision(interaction.client, flag)
        outcome = "upheld — the draft was removed" if self.uphold else "dismissed"
        await interaction.response.edit_message(
            content=f"{describe_flag(flag, interaction.client.links_allowed_domains)}\n\n"
                    f"✅ Flag #{flag.id} {outcome} by {interaction.user.mention}.", suppress_embeds=True,
            view=None, allowed_mentions=NO_MENTIONS)


async def apply_decision(client: CopydeskClient, flag: Flag) -> None:
    """Show the outcome where the draft is: removed, or released if it was held."""
    draft = flag.draft
    if not (draft.channel_id and draft.message_id):
        return
    message = client.get_partial_messageable(int(draft.channel_id)).get_partial_message(int(draft.message_id))
    if draft.variant_group is not None:  # the message shows its variants too: drawn again from their rows
        content, files, view = final_content(await client.require_service().variants_of(draft),
                                             client.links_allowed_domains)
        await message.edit(content=content, view=view, attachments=files, allowed_mentions=NO_MENTIONS)
    elif flag.status == "upheld":
        await message.edit(content=REMOVED, view=None, attachments=[], allowed_mentions=NO_MENTIONS)
    elif flag.source == "auto":
        content, attachment = final_message(draft, redact_code_words(draft.output, draft.system_prompt),
                                            client.links_allowed_domains)
        await message.edit(content=content, view=feedback_view(draft.id), allowed_mentions=NO_MENTIONS,
                           attachments=[attachment] if attachment else [])


@app_commands.command(name="review", description="Moderators: the open flags, oldest first, or the audit log")
@app_commands.guild_only()
@app_commands.default_permissions(manage_messages=True)
@app_commands.describe(show="What to show")
@app_commands.choices(show=[app_commands.Choice(name="queue", value="queue"),
                            app_commands.Choice(name="log", value="log")])
async def review(interaction: Interaction, show: str = "queue") -> None:
    if not await require_moderator(interaction):
        return
    moderation = service_of(interaction).moderation
    guild_id = str(interaction.guild_id)
    if show == "log":
        actions = await moderation.log(guild_id)
        lines = [f"`{a.created_at:%Y-%m-%d %H:%M}` <@{a.moderator_id}> **{a.action}** flag #{a.flag_id} "
                 f"(draft #{a.draft_id}){' — ' + reveal(a.note, 200) if a.note else ''}" for a in actions]
        await tell(interaction, "\n".join(lines)[:2000] if lines else "The audit log is empty.")
        return
    flags = await moderation.queue(guild_id, limit=5)
    if not flags:
        await tell(interaction, "No open flags. 🎉")
        return
    await interaction.response.send_message(f"{len(flags)} oldest open flag(s):", ephemeral=True)
    for flag in flags:
        await interaction.followup.send(describe_flag(flag, interaction.client.links_allowed_domains, limit=1200),
                                        view=decision_view(flag.id), suppress_embeds=True,
                                        ephemeral=True, allowed_mentions=NO_MENTIONS)


@app_commands.command(name="status", description="Moderators: queue, drafts and throughput of the last hour")
@app_commands.guild_only()
@app_commands.default_permissions(manage_messages=True)
async def status(interaction: Interaction) -> None:
    if not await require_moderator(interaction):
        return
    await tell(interaction, "\n".join((await service_of(interaction).status()).lines()))
