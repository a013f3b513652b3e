"""`/models train` for moderators: the next model version, trained from the team's feedback, off the loop.

The same use case as `copydesk train NAME` without `--from`: export with the deployment's defaults,
train with `[training]`'s, evaluate against the serving version, register a candidate (not
served). Training runs in worker threads, so the bot goes on answering while it trains. The
progress is one message in the channel, edited at most every PROGRESS_EVERY_S (Discord allows
about one edit a second per message; a training step takes seconds anyway), and the result is a
second message with the evaluation table. A run can outlive the interaction's 15-minute token,
so everything after the start goes to the channel; what only the moderator should read (why a
run was refused) is ephemeral.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from bot.discord.context import Interaction, member_of, require_moderator, service_of
from bot.discord.errors import report, tell
from bot.errors import MEMBER_ERRORS
from bot.versions import Trained
from generation.training import METHODS, TrainingError, TrainingProgress
from storage import DatasetSummary, StorageError

log = logging.getLogger("copydesk.discord")
PROGRESS_EVERY_S = 5.0
NO_MENTIONS = discord.AllowedMentions.none()
# What `copydesk train` explains in one line (an export too small, a name in use, a full disk), the
# moderator reads here too; anything else is ours: logged, and answered with an apology.
EXPLAINED = (*MEMBER_ERRORS, TrainingError, StorageError)


class ProgressPost:
    """The run's progress as one channel message: posted at its first step, then edited at most every
    PROGRESS_EVERY_S with the newest progress the training thread left."""

    def __init__(self, interaction: Interaction, name: str) -> None:
        self._interaction, self._name = interaction, name
        self._latest: TrainingProgress | None = None  # set by the training thread, read by the loop
        self._message: discord.Message | None = None

    @property
    def posted(self) -> bool:
        return self._message is not None

    def update(self, progress: TrainingProgress) -> None:
        """Called from the training thread at every step: one assignment, nothing sent from there."""
        self._latest = progress

    async def follow(self) -> None:
        """Runs until cancelled: show the newest progress, then wait before the next edit."""
        shown: TrainingProgress | None = None
        while True:
            if (latest := self._latest) is not None and latest != shown:
                try:
                    await self._show(f"🏋️ Training **{self._name}**: `{latest.line()}`")
                except discord.HTTPException as error:  # the training goes on; the next edit may get through
                    log.warning("could not show the progress of training %s: %s", self._name, error)
                shown = latest
            await asyncio.sleep(PROGRESS_EVERY_S)

    async def _show(self, content: str) -> None:
        if self._message is not None:
            await self._message.edit(content=content, allowed_mentions=NO_MENTIONS)
            return
        channel = self._interaction.channel
        assert isinstance(channel, discord.abc.Messageable)  # a guild channel: the command is guild_only
        self._message = await channel.send(content, allowed_mentions=NO_MENTIONS)
        await tell(self._interaction, f"Training **{self._name}** has started; its progress is in {self._message.jump_url}. "
                                      "The bot keeps drafting meanwhile.")

    async def say(self, content: str) -> None:
        """A new message in the channel (the result, or that the run stopped)."""
        channel = self._interaction.channel
        assert isinstance(channel, discord.abc.Messageable)
        await channel.send(content, allowed_mentions=NO_MENTIONS)


def result_text(trained: Trained) -> str:
    version = trained.version
    return (f"✅ Model version **{version.name}** is trained ({version.method}, {version.wall_time_s:.0f} s): a "
            f"candidate, not served yet. Evaluated against **{trained.incumbent}** on the export's test split:\n"
            f"```\n{trained.evaluation.table()}\n```\nServe it with `/models serve name:{version.name}`.")


@app_commands.command(name="train", description="Moderators: train the next model version on the team's feedback")
@app_commands.describe(name="The new version's name, e.g. v2", method="Trainer(s): SFT, DPO, KTO, or SFT then DPO",
                       epochs="Passes over the rows (default: the bot's [training] epochs)")
@app_commands.choices(method=[Choice(name=method, value=method) for method in METHODS])
async def train_version(interaction: Interaction, name: Range[str, 1, 64], method: str,
                        epochs: Range[float, 0.1, 100.0] | None = None) -> None:
    if not await require_moderator(interaction):
        return
    versions = service_of(interaction).versions
    if versions.training is not None:  # answered at once; `train` refuses it too, should two race here
        await tell(interaction, f"⚠️ Model version **{versions.training}** is being trained now; one training runs "
                                "at a time, so please start this one once it has finished.")
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    member = member_of(interaction)
    post = ProgressPost(interaction, name)
    follower = asyncio.create_task(post.follow())

    async def export_first(folder: Path) -> DatasetSummary:
        return await service_of(interaction).export(folder)

    try:
        trained = await versions.train(name, versions.defaults.config(method=method, epochs=epochs),
                                       export=export_first, on_progress=post.update, by=member.id,
                                       guild_id=member.guild_id)
    except Exception as error:  # noqa: BLE001 - explained to the moderator, logged if ours
        follower.cancel()
        if post.posted:
            await post.say(f"⚠️ Training **{name}** stopped; nothing was registered. "
                           f"{interaction.user.mention} was told why.")
        await _explain(interaction, error)
        return
    follower.cancel()
    await post.say(result_text(trained))
    if not post.posted:  # done before its first progress was shown: the moderator still sees "thinking…"
        await tell(interaction, f"Model version **{name}** is trained; the result is in this channel.")


async def _explain(interaction: Interaction, error: Exception) -> None:
    try:
        if isinstance(error, EXPLAINED):
            await tell(interaction, f"⚠️ {error}")
        else:
            await report(interaction, error)
    except discord.HTTPException:  # the interaction's token expired during a long run
        log.warning("could not tell the moderator why training stopped: %s", error)
