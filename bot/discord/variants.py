"""Variants in Discord: the drafts of one request streamed together into one message, a "This one" under each.

The message keeps to Discord's 2000 characters: each variant gets an equal share of it, shows its
beginning when it is longer, and then comes whole as a `.md` file; a finished one ends with its quality
signals, and a platform draft shows its fields with their counts. Each finished variant has its own
row of buttons, in its order: ✅ This one (the member's pick over the others, a preference pair in the
dpo export), 👍, 👎, Improve, Flag. While they are written, Cancel stops them all. The message is
drawn from the stored drafts when they are done, and again when a moderator decides on one of them.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from typing import Any

import discord

from bot.discord.components import Button
from bot.discord.context import Interaction, member_of, service_of
from bot.discord.drafting import HELD, DraftMessage, checked_inputs, created, platform_text, written_by
from bot.discord.errors import DraftFailed, in_time, tell
from bot.discord.feedback import FlagButton, ImproveButton, RateButton
from bot.discord.model_text import shown
from bot.discord.rendering import split_message, streaming_preview
from bot.service import INTERRUPTED_BY_RESTART, DraftProgress
from generation import get_task
from generation.language import AUTO
from generation.platforms import PlatformDraft
from generation.quality import quality_line
from generation.safety import redact_code_words
from storage import Draft, DraftStatus

MESSAGE_ROOM = 1800  # of Discord's 2000, as for one draft: room for a mention should it become a channel message
REMOVED = "🛑 Removed by a moderator."


class PickButton(Button, template=r"copydesk:pick:(?P<draft>\d{1,18})"):
    """✅ This one: the member prefers this variant over the others shown with it; a second pick changes it."""

    draft_id: int

    def __init__(self, draft_id: int, place: int | None = None) -> None:
        self.draft_id = draft_id
        super().__init__(discord.ui.Button(
            label=f"This one ({place})" if place else "This one", emoji="✅", style=discord.ButtonStyle.success,
            custom_id=f"copydesk:pick:{draft_id}",
        ))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: Any,
                             match: re.Match[str]) -> PickButton:
        return cls(int(match["draft"]))

    async def on_click(self, interaction: Interaction) -> None:
        place, count = await in_time(interaction, service_of(interaction).pick(member_of(interaction), self.draft_id))
        await tell(interaction, f"✅ Noted: you prefer variant {place} of {count} (draft #{self.draft_id}). "
                                "The others stay as alternatives; pick another one to change your mind.")


async def start_variants(interaction: Interaction, task_name: str, inputs: Mapping[str, str | None],
                         count: int) -> None:
    """As `start_draft`, for `count` variants of one request: every mistake is answered before "thinking…"."""
    fields, options = checked_inputs(task_name, inputs)
    get_task(task_name).check_variants(count)
    await interaction.response.defer(thinking=True)
    creating = service_of(interaction).create_variants(member_of(interaction), task_name, fields, count,
                                                       language=options.get("language", AUTO))
    with interaction.client.drafting():
        await stream_variants(interaction, await created(interaction, creating))


async def stream_variants(interaction: Interaction, drafts: Sequence[Draft]) -> None:
    """Write stored, queued variants at once into the interaction's (deferred) reply."""
    message = VariantsMessage(interaction, drafts)
    snapshot: tuple[DraftProgress, ...] = ()
    try:
        steps = service_of(interaction).generate_together([draft.id for draft in drafts])
        async with aclosing(steps):
            async for snapshot in steps:
                await message.show_all(snapshot)
        await message.finish_all()
        for progress in snapshot:
            if progress.flag_id is not None:
                await interaction.client.post_for_review(progress.flag_id)
    except Exception as error:
        raise DraftFailed(drafts[0].id) from error


class VariantsMessage(DraftMessage):
    """The reply the variants stream into: one draft's message (throttled edits, the token's lifetime)
    showing them all."""

    def __init__(self, interaction: Interaction, drafts: Sequence[Draft]) -> None:
        super().__init__(interaction, drafts[0])  # its Cancel stops them all (DraftService.withdraw)
        self._drafts = list(drafts)

    async def show_all(self, snapshot: Sequence[DraftProgress]) -> None:
        await self._edit_streaming(streaming_content(self._drafts, snapshot,
                                                     self._interaction.client.links_allowed_domains))

    async def finish_all(self) -> None:
        stored = await service_of(self._interaction).variants_of(self._draft)
        content, files, view = final_content(stored, self._interaction.client.links_allowed_domains)
        await self._send_final(content, view=view, files=files)

    @property
    def _shown_drafts(self) -> list[Draft]:
        return self._drafts


def variants_header(drafts: Sequence[Draft]) -> str:
    first = drafts[0]
    return (f"-# {len(drafts)} variants · drafts #{first.id}–#{drafts[-1].id} · {first.task} · "
            f"{first.model} ({first.quantization}) · {written_by(first)} · "
            "pick the one you like best: ✅ This one")


def streaming_content(drafts: Sequence[Draft], snapshot: Sequence[DraftProgress],
                      allowed_domains: tuple[str, ...]) -> str:
    """The message while the variants are written: each with its newest text, or where it stands."""
    header = variants_header(drafts)
    room = _room(header, len(drafts))
    blocks = []
    for place, (draft, progress) in enumerate(zip(drafts, snapshot, strict=True), 1):
        title = _title(place, draft)
        if progress.held:
            blocks.append(f"{title}\n{HELD}")
        elif progress.status == DraftStatus.QUEUED:
            blocks.append(f"{title}\n⏳ Waiting for the model — {progress.ahead} draft(s) ahead.")
        elif progress.status == DraftStatus.RUNNING:
            blocks.append(streaming_preview(shown(progress.text, allowed_domains), title, limit=room))
        elif progress.status == DraftStatus.DONE:
            blocks.append(f"{title}\n{split_message(shown(progress.text, allowed_domains), room - len(title) - 1)[0]}")
        else:
            blocks.append(f"{title}\n{_ended(progress.status, progress.error)}")
    return "\n".join([header, *blocks])


def final_content(drafts: Sequence[Draft], allowed_domains: tuple[str, ...]
                  ) -> tuple[str, list[discord.File], discord.ui.View]:
    """The message of finished variants, from their stored rows: each one's text (its beginning, and the
    whole as a file, when it is longer than its share) and, for each one that can be shown, its row of buttons."""
    header = variants_header(drafts)
    room = _room(header, len(drafts))
    blocks, files, view = [], [], discord.ui.View(timeout=None)
    for place, draft in enumerate(drafts, 1):
        title = _title(place, draft)
        if draft.removed_at is not None:
            blocks.append(f"{title}\n{REMOVED}")
        elif draft.held:
            blocks.append(f"{title}\n{HELD}")
        elif draft.status != DraftStatus.DONE:
            blocks.append(f"{title}\n{_ended(draft.status, draft.error)}")
        else:
            fields = PlatformDraft.from_json(draft.platform, draft.fields) if draft.fields else None
            written = platform_text(fields) if fields else draft.output  # a platform draft's fields with their counts
            text = redact_code_words(written, draft.system_prompt)  # a no-op unless a moderator released it
            footer = f"\n-# {quality_line(draft.quality)}" if draft.quality else ""
            body, whole = _fitted(draft, shown(text, allowed_domains), room - len(title) - 1 - len(footer))
            blocks.append(f"{title}\n{body}{footer}")
            if whole:
                files.append(discord.File(io.BytesIO(text.encode()), filename=_file_name(draft)))
            for item in (PickButton(draft.id, place), RateButton(draft.id, True), RateButton(draft.id, False),
                         ImproveButton(draft.id), FlagButton(draft.id)):
                item.row = place - 1  # a row per variant, in its order
                view.add_item(item)
    return "\n".join([header, *blocks]), files, view


def _room(header: str, count: int) -> int:
    """Characters each variant's block may take, title included, so that the message keeps MESSAGE_ROOM."""
    return (MESSAGE_ROOM - len(header)) // count - 1  # a line break before each block


def _title(place: int, draft: Draft) -> str:
    return f"**Variant {place}** · draft #{draft.id}"


def _file_name(draft: Draft) -> str:
    return f"draft-{draft.id}.md"


def _fitted(draft: Draft, text: str, limit: int) -> tuple[str, bool]:
    """The text within `limit` characters, or its beginning and a note that the whole is attached (True)."""
    chunks = split_message(text, limit)
    if len(chunks) == 1:
        return chunks[0], False
    note = f"\n-# … the whole variant is in {_file_name(draft)}."
    return split_message(text, limit - len(note))[0] + note, True


def _ended(status: DraftStatus, error: str | None) -> str:
    """A variant that stopped before it was finished."""
    if status == DraftStatus.CANCELLED:
        return "*Cancelled.*"
    if status == DraftStatus.INTERRUPTED:
        return f"⚠️ Interrupted — {INTERRUPTED_BY_RESTART}."
    return f"⚠️ This variant failed: {error}"
