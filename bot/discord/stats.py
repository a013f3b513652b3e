"""`/stats`: which model version writes better in this server, by the written rule, with the chart.

The same use case as `copydesk stats`, limited to the server's own drafts; the chart is rendered in
a worker thread and attached as a PNG.
"""

from __future__ import annotations

import io

import discord
from discord import app_commands
from discord.app_commands import Choice

from bot.discord.context import Interaction, service_of
from bot.discord.errors import report, tell
from bot.discord.export import date_option
from bot.stats import stats_title, version_lines
from generation import TASKS, InputError

CHART_NAME = "copydesk-stats.png"
MESSAGE_LIMIT = 2000  # characters of a message's content (Discord's limit)


@app_commands.command(name="stats", description="Which model version the team likes better here, with a chart")
@app_commands.guild_only()
@app_commands.describe(task="Only this task's drafts", since="Drafts created on or after this date (YYYY-MM-DD, UTC)")
@app_commands.choices(task=[Choice(name=name, value=name) for name in TASKS])
async def stats(interaction: Interaction, task: str | None = None, since: str | None = None) -> None:
    try:
        start = date_option(since, "since")
    except InputError as error:
        await report(interaction, error)
        return
    await interaction.response.defer(ephemeral=True, thinking=True)  # the chart takes a few seconds
    service, guild_id = service_of(interaction), str(interaction.guild_id)
    tallies = await service.version_tallies(task=task, since=start, guild_id=guild_id)
    if not tallies:
        await tell(interaction, "No finished drafts here yet" + (f" of {task}" if task else "")
                   + (f" since {since}" if since else "") + ".")
        return
    chart = await service.stats_chart(stats_title(task, start), task=task, since=start, guild_id=guild_id)
    await interaction.followup.send(fit(version_lines(tallies, service.decision_rule)),
                                    file=discord.File(io.BytesIO(chart), CHART_NAME), ephemeral=True)


def fit(lines: list[str]) -> str:
    """The version lines that fit in one message, then the rule and the verdict (always shown)."""
    *versions, rule, verdict = lines
    for shown in range(len(versions), -1, -1):
        left_out = [f"… and {len(versions) - shown} more versions: `copydesk stats` lists them all"] \
            if shown < len(versions) else []
        text = "\n".join([*versions[:shown], *left_out, rule, verdict])
        if len(text) <= MESSAGE_LIMIT:
            return text
    raise AssertionError("the rule and the verdict alone fit in a message")
