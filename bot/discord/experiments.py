"""`/experiment` for moderators: start, follow, stop and promote a blind experiment on a task, logged.

The same use cases as `copydesk experiment …`; members drafting meanwhile are never told which
variant wrote their draft.
"""

from __future__ import annotations

import io

import discord
from discord import app_commands
from discord.app_commands import Choice

from bot.discord.context import Interaction, member_of, require_moderator, service_of
from bot.discord.errors import tell
from bot.discord.stats import CHART_NAME, fit
from bot.experiments import SPEC_HELP, VariantSpec, experiment_heading
from bot.stats import version_lines
from generation import TASKS
from storage import Assignment

TASK_CHOICES = [Choice(name=name, value=name) for name in TASKS]
SPEC = app_commands.Range[str, 1, 200]

experiment_group = app_commands.Group(name="experiment", description="Moderators: blind experiments between versions",
                                      guild_only=True, default_permissions=discord.Permissions(manage_messages=True))


@experiment_group.command(name="start", description="Moderators: new drafts of a task go to these variants, blind")
@app_commands.describe(task="The task whose new drafts take part", variant_a=SPEC_HELP, variant_b=SPEC_HELP,
                       variant_c="Optional third variant, written the same way",
                       variant_d="Optional fourth variant, written the same way",
                       assignment="Draw each draft, or keep each member on one variant (default: the setting)")
@app_commands.choices(task=TASK_CHOICES, assignment=[Choice(name=kind.value, value=kind.value) for kind in Assignment])
async def start(interaction: Interaction, task: str, variant_a: SPEC, variant_b: SPEC, variant_c: SPEC | None = None,
                variant_d: SPEC | None = None, assignment: str | None = None) -> None:
    if not await require_moderator(interaction):
        return
    specs = [VariantSpec.parse(text) for text in (variant_a, variant_b, variant_c, variant_d) if text]
    await interaction.response.defer(ephemeral=True, thinking=True)  # checking a model version reads its folder
    member = member_of(interaction)
    experiments = service_of(interaction).experiments
    started = await experiments.start(task, specs, by=member.id, guild_id=member.guild_id,
                                      assignment=Assignment(assignment) if assignment else None)
    heading = experiment_heading(started)
    await tell(interaction, "\n".join([f"Started: {heading[0]}", *heading[1:],
                                       "Members are not told which variant wrote their draft."]))


@experiment_group.command(name="status", description="Moderators: how each variant is doing, with the chart")
@app_commands.describe(task="The task whose experiment to show (the running one, else the latest)")
@app_commands.choices(task=TASK_CHOICES)
async def status(interaction: Interaction, task: str) -> None:
    if not await require_moderator(interaction):
        return
    await interaction.response.defer(ephemeral=True, thinking=True)  # the chart takes a few seconds
    service = service_of(interaction)
    report = await service.experiments.report(task)
    heading = report.heading()
    lines = version_lines(report.tallies, service.decision_rule, report.head_to_head, report.verdict)
    chart = await service.stats_chart(f"copydesk · experiment #{report.experiment.id} on {task}",
                                      experiment_id=report.experiment.id)
    await interaction.followup.send(fit([*heading, *lines]), file=discord.File(io.BytesIO(chart), CHART_NAME),
                                    ephemeral=True)


@experiment_group.command(name="stop", description="Moderators: end the task's experiment without a winner")
@app_commands.choices(task=TASK_CHOICES)
async def stop(interaction: Interaction, task: str) -> None:
    if not await require_moderator(interaction):
        return
    stopped = await service_of(interaction).experiments.stop(task, by=member_of(interaction).id)
    await tell(interaction, f"Stopped experiment #{stopped.id} on {task}; it serves what it served before.")


@experiment_group.command(name="promote", description="Moderators: make a variant what the task serves")
@app_commands.describe(task="The task whose experiment ends", variant="A, B, … (default: the rule's winner)")
@app_commands.choices(task=TASK_CHOICES)
async def promote(interaction: Interaction, task: str, variant: app_commands.Range[str, 1, 1] | None = None) -> None:
    if not await require_moderator(interaction):
        return
    await interaction.response.defer(ephemeral=True, thinking=True)
    arm = await service_of(interaction).experiments.promote(task, variant, by=member_of(interaction).id)
    await tell(interaction, f"**{task}** now serves model `{arm.model_version}` with template `{arm.template_version}` "
                            f"(variant {arm.label}). `/experiment rollback` goes back.")


@experiment_group.command(name="rollback", description="Moderators: restore what the task served before")
@app_commands.choices(task=TASK_CHOICES)
async def rollback(interaction: Interaction, task: str) -> None:
    if not await require_moderator(interaction):
        return
    member = member_of(interaction)
    route = await service_of(interaction).experiments.rollback(task, by=member.id, guild_id=member.guild_id)
    await tell(interaction, f"**{task}** now serves model `{route.model_version}` with template "
                            f"`{route.template_version}`.")
