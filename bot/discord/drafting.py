"""A draft in Discord: defer at once, stream into the reply with throttled edits, finish with buttons.

The finished draft's message and its buttons are here, with Regenerate, which streams a new one.
The interaction token lives 15 minutes; a draft that outlives it is finished as a normal channel
message that mentions the member, so nothing they asked for is lost, and the reply it was streaming
into is deleted rather than left half-written.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Awaitable, Coroutine, Mapping, Sequence
from contextlib import aclosing
from datetime import timedelta
from typing import Any, TypeVar

import discord

from bot.discord.context import Interaction, member_of, service_of
from bot.discord.errors import DraftFailed
from bot.discord.feedback import DraftButton, FlagButton, ImproveButton, RateButton, cancel_view
from bot.discord.model_text import edit_original, shown
from bot.discord.rendering import split_message, streaming_preview
from bot.errors import MEMBER_ERRORS
from bot.service import INTERRUPTED_BY_RESTART, DraftProgress
from generation import get_task
from generation.language import AUTO
from generation.platforms import PlatformDraft, get_platform
from generation.quality import quality_line
from storage import Draft, DraftStatus

log = logging.getLogger("copydesk.discord")
EDIT_INTERVAL_S = 1.2
TOKEN_LIFETIME = timedelta(minutes=15)
TOKEN_SAFETY_MARGIN = timedelta(seconds=30)
EXPIRED_TOKEN = 50027
NO_MENTIONS = discord.AllowedMentions.none()
HELD = "⏸️ This draft is waiting for a moderator's review before it can be shown."
T = TypeVar("T")


async def start_draft(interaction: Interaction, task_name: str, inputs: Mapping[str, str | None]) -> None:
    """Check the input (instant: a mistake is answered before any "thinking…"), defer, store the draft,
    then stream it."""
    fields, options = checked_inputs(task_name, inputs)
    await interaction.response.defer(thinking=True)
    await stream_new_draft(interaction, service_of(interaction).create_draft(member_of(interaction), task_name, fields,
                                                                             language=options.get("language", AUTO)))


def checked_inputs(task_name: str, inputs: Mapping[str, str | None]) -> tuple[dict[str, str], dict[str, str]]:
    """The options a member gave, checked, as the task's inputs and the draft's options (its language);
    a mistake raises InputError."""
    return get_task(task_name).split({name: value for name, value in inputs.items() if value is not None})


async def stream_new_draft(interaction: Interaction, creating: Awaitable[Draft]) -> None:
    """After a "thinking…" defer: store the draft and stream it."""
    with interaction.client.drafting():
        await stream_draft(interaction, await created(interaction, creating))


async def created(interaction: Interaction, creating: Awaitable[T]) -> T:
    """After a "thinking…" defer: what the service stored, or, if the member is over a limit (or the like),
    the "thinking…" message taken back before the error is reported."""
    try:
        return await creating
    except MEMBER_ERRORS:
        await interaction.delete_original_response()
        raise


async def stream_draft(interaction: Interaction, draft: Draft) -> None:
    """Generate a stored, queued draft into the interaction's (deferred) reply."""
    message = DraftMessage(interaction, draft)
    progress: DraftProgress | None = None
    try:
        # Closed at once if showing a step fails, so the draft is marked rather than left running.
        steps = service_of(interaction).generate(draft.id)
        async with aclosing(steps):
            async for progress in steps:
                await message.show(progress)
        if progress is not None:
            await message.finish(progress)
        if progress is not None and progress.flag_id is not None:
            await interaction.client.post_for_review(progress.flag_id)
    except Exception as error:
        raise DraftFailed(draft.id) from error


class RegenerateButton(DraftButton, action="regenerate"):
    label, emoji, style = "Regenerate", "🔁", discord.ButtonStyle.primary

    async def on_click(self, interaction: Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await stream_new_draft(interaction, service_of(interaction).regenerate(member_of(interaction), self.draft_id))


def feedback_view(draft_id: int) -> discord.ui.View:
    """The buttons for a finished draft; no timeout, since the ids carry all the state."""
    view = discord.ui.View(timeout=None)
    for item in (RateButton(draft_id, True), RateButton(draft_id, False), RegenerateButton(draft_id),
                 ImproveButton(draft_id), FlagButton(draft_id)):
        view.add_item(item)
    return view


def draft_header(draft: Draft) -> str:
    """Which draft, of what, and the model version that wrote it."""
    return f"-# draft #{draft.id} · {draft.task} · {draft.model} ({draft.quantization}) · {written_by(draft)}"


def written_by(draft: Draft) -> str:
    """The model version, except in an experiment: members rate blind, so they see only that one runs."""
    return f"version {draft.model_version}" if draft.experiment_id is None else f"experiment #{draft.experiment_id}"


def interrupted_notice(draft: Draft) -> str:
    """For a draft the process stopped: names its member (mentions are never allowed to ping)."""
    return f"{draft_header(draft)}\n⚠️ Interrupted — <@{draft.author_id}>, {INTERRUPTED_BY_RESTART}."


def final_message(draft: Draft, text: str, allowed_domains: tuple[str, ...],
                  quality: Mapping[str, Any] | None = None,
                  fields: PlatformDraft | None = None) -> tuple[str, discord.File | None]:
    """One message per draft, so a moderator's decision reaches all of it: a draft longer than a
    message shows its beginning (code fences closed, links shown for what they are) and comes whole,
    as the model wrote it, as a `.md` file. A platform draft shows each field with its count. Its
    quality signals (`quality`, else the stored ones) end it in one small line."""
    header = draft_header(draft)
    if fields is not None:
        text = platform_text(fields)
    signals = quality if quality is not None else draft.quality
    footer = f"\n-# {quality_line(signals)}" if signals else ""
    # Room for the header, the footer, the note on the file, and a mention should it end up as a channel message.
    chunks = split_message(shown(text, allowed_domains), limit=1800 - len(header) - len(footer))
    if len(chunks) == 1:
        return f"{header}\n{chunks[0]}{footer}", None
    attachment = discord.File(io.BytesIO(text.encode()), filename=f"draft-{draft.id}.md")
    return f"{header}\n{chunks[0]}\n-# … the whole draft is in the attached file.{footer}", attachment


def platform_text(fields: PlatformDraft) -> str:
    """A platform draft as a member checks it: how it is counted, then `Headline 1 (27/30): …` a line."""
    rule = get_platform(fields.platform).rule
    verdict = "every field fits" if fields.fits else "⚠️ some fields do not fit: see below"
    return "\n".join([f"-# {fields.platform} · counted as {rule.name} ({rule.source}) · {verdict}", *fields.lines()])


class DraftMessage:
    """The reply a draft streams into; edits at most once per EDIT_INTERVAL_S."""

    def __init__(self, interaction: Interaction, draft: Draft) -> None:
        self._interaction = interaction
        self._draft = draft
        self._header = draft_header(draft)
        self._last_edit = 0.0
        self._shown = ""
        self._token_dead = False
        self._reply: discord.Message | None = None  # the deferred reply, once an edit through the token says where

    async def show(self, progress: DraftProgress) -> None:
        if progress.status == DraftStatus.QUEUED:
            content = f"{self._header}\n⏳ Waiting for the model — {progress.ahead} draft(s) ahead of yours."
        elif progress.held:
            content = f"{self._header}\n{HELD}"
        elif progress.status == DraftStatus.RUNNING:
            text = shown(progress.text, self._interaction.client.links_allowed_domains)
            content = streaming_preview(text, self._header)
        else:
            return
        await self._edit_streaming(content)

    async def _edit_streaming(self, content: str) -> None:
        """Show a streaming step, unless it shows nothing new or the last edit was too recent."""
        if content == self._shown or time.monotonic() - self._last_edit < EDIT_INTERVAL_S:
            return
        self._last_edit = time.monotonic()
        first = not self._shown
        self._shown = content
        # The Cancel button comes with the first edit; later edits leave the components as they are.
        await self._via_token(edit_original(self._interaction, content=content,
                                            view=cancel_view(self._draft.id) if first else discord.utils.MISSING))

    async def finish(self, progress: DraftProgress) -> None:
        if progress.held:
            await self._send_final(f"{self._header}\n{HELD}", view=None)
        elif progress.status == DraftStatus.DONE:
            await self._deliver(progress.text, progress.quality, progress.fields)
        elif progress.status == DraftStatus.CANCELLED:
            await self._send_final(f"{self._header}\n*Cancelled.*", view=None)
        elif progress.status == DraftStatus.INTERRUPTED:
            await self._send_final(interrupted_notice(self._draft), view=None)
        else:
            await self._send_final(f"{self._header}\n⚠️ This draft failed: {progress.error}", view=None)

    async def _deliver(self, text: str, quality: Mapping[str, Any] | None, fields: PlatformDraft | None) -> None:
        content, attachment = final_message(self._draft, text, self._interaction.client.links_allowed_domains, quality,
                                            fields)
        await self._send_final(content, view=feedback_view(self._draft.id), files=[attachment] if attachment else [])

    async def _send_final(self, content: str, view: discord.ui.View | None, files: Sequence[discord.File] = ()) -> None:
        """Replace the streaming reply with the final one, and remember where it is for moderators."""
        edit = edit_original(self._interaction, content=content, view=view, attachments=files or discord.utils.MISSING)
        message = await self._via_token(edit)
        if message is None:
            message = await self._channel_message(content, view=view, files=files)
            await self._delete_reply()
        for draft in self._shown_drafts:
            await service_of(self._interaction).record_message(draft.id, str(message.channel.id), str(message.id))

    @property
    def _shown_drafts(self) -> list[Draft]:
        """The drafts the message shows, which a moderator's decision updates there."""
        return [self._draft]

    async def _via_token(self, request: Coroutine[Any, Any, discord.Message]) -> discord.Message | None:
        """Send through the interaction token while it lives; None once Discord says it expired."""
        if not self._token_usable():
            request.close()
            return None
        try:
            message = await request
        except discord.HTTPException as error:
            if error.code != EXPIRED_TOKEN:
                raise
            self._token_dead = True
            return None
        self._reply = self._reply or message
        return message

    async def _channel_message(self, content: str, view: discord.ui.View | None,
                               files: Sequence[discord.File]) -> discord.Message:
        """After the token expired: a normal message in the channel that pings only the member."""
        channel = self._interaction.client.get_partial_messageable(self._interaction.channel_id or 0)
        mention = f"{self._interaction.user.mention}, your draft is ready:\n"
        return await channel.send(
            (mention + content)[:2000], view=view or discord.utils.MISSING, files=files or discord.utils.MISSING,
            suppress_embeds=True,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=[self._interaction.user]),
        )

    async def _delete_reply(self) -> None:
        """The reply the token no longer reaches would stay "thinking…" (or half-written) forever: the bot
        deletes its own message through the channel, where it knows the reply."""
        if self._reply is None:
            return
        reply = self._interaction.client.get_partial_messageable(self._reply.channel.id)
        try:
            await reply.get_partial_message(self._reply.id).delete()
        except discord.HTTPException as error:
            log.warning("could not delete the reply of draft %s after its token expired: %s", self._draft.id, error)

    def _token_usable(self) -> bool:
        age = discord.utils.utcnow() - self._interaction.created_at
        return not self._token_dead and age < TOKEN_LIFETIME - TOKEN_SAFETY_MARGIN
