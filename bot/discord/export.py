"""`/export` for moderators: this server's training dataset, as `copydesk export` writes it, zipped.

The zip is attached when it fits the upload limit (the smaller of what Discord says this
interaction may upload and `export.discord_attachment_mb`); otherwise the moderator is told the
`copydesk export` command that writes the same dataset on the bot's machine. A moderator exports
only the server they are in.
"""

from __future__ import annotations

import asyncio
import shlex
import tempfile
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from bot.discord.context import Interaction, require_moderator, service_of
from bot.discord.errors import report
from generation import TASKS, InputError
from storage import EXPORT_FORMATS, DatasetSummary, FeedbackFilter, Reason, formats_list
from storage.atomic import replacing, scratch_folder

ARCHIVE = "copydesk-export"
MB = 1024 * 1024


def date_option(value: str | None, option: str) -> datetime | None:
    """A command's YYYY-MM-DD option as the start of that day in UTC."""
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InputError(f"{option}: write a date as YYYY-MM-DD, e.g. 2026-11-01 (got {value!r})") from None


def cli_command(guild_id: int, options: Mapping[str, object]) -> str:
    """The `copydesk export` command line that writes the same dataset."""
    words = ["copydesk", "export", "--out", "dataset", "--guild", str(guild_id)]
    for name, value in options.items():
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(words)


def _zip(folder: Path) -> Path:
    """The folder's files in one zip beside it, which appears only once it is whole."""
    archive = folder.with_name(f"{folder.name}.zip")
    with replacing(archive) as partial, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(folder.iterdir()):
            zipped.write(path, path.name)
    return archive


@app_commands.command(name="export", description="Moderators: this server's rated drafts as a training dataset (zip)")
@app_commands.guild_only()
@app_commands.default_permissions(manage_messages=True)
@app_commands.describe(
    format=f"One format, or all ({formats_list()})", since="Drafts created on or after this date (YYYY-MM-DD, UTC)",
    until="Drafts created before this date (YYYY-MM-DD, UTC)", task="Only this task", model="Only drafts of this model",
    template_version="Only this prompt template version, e.g. ad-v1", min_votes="Votes a rating needs to count",
    min_rating="Mean rating (-1 to 1) a draft needs for SFT", test_fraction="Share of prompts in the test split")
@app_commands.choices(format=[Choice(name=name, value=name) for name in ("all", *EXPORT_FORMATS)],
                      task=[Choice(name=name, value=name) for name in TASKS])
async def export(
    interaction: Interaction,
    format: str = "all",
    since: str | None = None,
    until: str | None = None,
    task: str | None = None,
    model: Range[str, 1, 255] | None = None,
    template_version: Range[str, 1, 32] | None = None,
    min_votes: Range[int, 0, 1000] | None = None,
    min_rating: Range[float, -1.0, 1.0] | None = None,
    test_fraction: Range[float, 0.0, 0.9] | None = None,
) -> None:
    if not await require_moderator(interaction):
        return
    assert interaction.guild_id is not None  # guild_only
    try:
        filters = FeedbackFilter(since=date_option(since, "since"), until=date_option(until, "until"), tasks=(task,) if task else (),
                                 guild_id=str(interaction.guild_id), models=(model,) if model else (),
                                 template_versions=(template_version,) if template_version else ())
    except InputError as error:
        await report(interaction, error)
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    formats = EXPORT_FORMATS if format == "all" else (format,)
    try:
        with scratch_folder(Path(tempfile.gettempdir()), ARCHIVE) as temporary:
            folder = temporary / ARCHIVE
            summary = await service_of(interaction).export(folder, formats=formats, filters=filters,
                                                           rating_threshold=min_rating, min_votes=min_votes,
                                                           test_fraction=test_fraction)
            archive = await asyncio.to_thread(_zip, folder)
            configured: float = interaction.client.export_attachment_mb
            limit = min(interaction.filesize_limit, int(configured * MB))
            size = archive.stat().st_size
            report_text = _report(summary)
            if size <= limit:
                await interaction.followup.send(report_text, file=discord.File(archive, f"{ARCHIVE}.zip"), ephemeral=True)
                return
        options = {"format": None if format == "all" else format, "since": since, "until": until, "task": task,
                   "model": model, "template_version": template_version, "min_votes": min_votes,
                   "min_rating": min_rating, "test_fraction": test_fraction}
        await interaction.followup.send(
            f"{report_text}\n\nThe zipped dataset is {_size(size)}, over the {_size(limit)} this server can "
            f"receive here. Run this on the bot's machine to write it:\n`{cli_command(interaction.guild_id, options)}`",
            ephemeral=True)
    except Exception as error:  # noqa: BLE001 - reported to the moderator, logged if ours
        await report(interaction, error)


def _size(count: int) -> str:
    return f"{count / MB:.1f} MB" if count >= MB // 10 else f"{count / 1024:.0f} KB"


CONSENT_HINT = "Training use is opt-in: members allow it with `/privacy show`."


def _report(summary: DatasetSummary) -> str:
    text = "📦 **Dataset export**\n" + "\n".join(f"- {line}" for line in summary.lines())
    if summary.exclusions is not None and summary.exclusions.counts.get(Reason.NO_CONSENT):
        text += f"\n{CONSENT_HINT}"
    return text
