"""The drafting slash commands, built from the task catalogue, and the message context menu "Summarize".

Each task's catalogue entry gives its command (`Task.command`: "/draft ad" is subcommand "ad" of
group "draft", "/summarize" a command of its own) and its options: names, descriptions, lengths,
choices, whether required. So a new task is a new command, and Discord's form enforces the same
rules as the service (which checks them again: a client can send anything). A task that offers
variants (`Task.max_variants`) also takes `variants`: that many drafts side by side (`bot.discord.variants`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from bot.discord.context import Interaction
from bot.discord.drafting import start_draft
from bot.discord.variants import start_variants
from generation import VARIANTS_DESCRIPTION, Field, Task

# Groups are Discord's, not the catalogue's: a new group without an entry here is described by its first task.
GROUP_DESCRIPTIONS = {"draft": "Draft marketing copy", "write": "Write longer content"}

DESCRIPTION_LIMIT = 100
TaskCommand = app_commands.Command[Any, ..., None]


def task_commands(tasks: Iterable[Task]) -> list[TaskCommand | app_commands.Group]:
    """One slash command per task, subcommands gathered in their groups, in catalogue order."""
    commands: list[TaskCommand | app_commands.Group] = []
    groups: dict[str, app_commands.Group] = {}
    for task in tasks:
        *group_name, name = task.command.removeprefix("/").split()
        command = _task_command(task, name)
        if not group_name:
            commands.append(app_commands.guild_only(command))
            continue
        group = groups.get(group_name[0])
        if group is None:
            group = groups[group_name[0]] = app_commands.Group(
                name=group_name[0], description=GROUP_DESCRIPTIONS.get(group_name[0], task.description),
                guild_only=True)
            commands.append(group)
        group.add_command(command)
    return commands


def _task_command(task: Task, name: str) -> TaskCommand:
    async def draft(interaction: Interaction, variants: int | None = None, **inputs: str | None) -> None:
        if variants is None or variants == 1:
            await start_draft(interaction, task.name, inputs)
        else:
            await start_variants(interaction, task.name, inputs, variants)

    # discord.py reads a command's options off its callback's signature: give it one per field, and
    # variants where the task offers them.
    interaction = inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Interaction)
    options = (*task.fields, *task.options)
    parameters = [interaction, *map(_option, options)]
    descriptions = {field.name: _sentence(field.description) for field in options}
    if task.max_variants > 1:
        parameters.append(inspect.Parameter("variants", inspect.Parameter.KEYWORD_ONLY,
                                            annotation=Range[int, 1, task.max_variants], default=None))
        descriptions["variants"] = _sentence(f"{VARIANTS_DESCRIPTION}, 1 to {task.max_variants}")
    vars(draft)["__signature__"] = inspect.Signature(parameters)
    app_commands.describe(**descriptions)(draft)
    app_commands.choices(**{field.name: [Choice(name=value, value=value) for value in field.choices]
                            for field in options if field.choices})(draft)
    return app_commands.Command(name=name, description=_sentence(task.description), callback=draft)


def _option(field: Field) -> inspect.Parameter:
    """A field as a string option: a choice needs no length limits; a free text is 1 to max_chars long."""
    annotation = str if field.choices else Range[str, 1, field.max_chars]
    default = inspect.Parameter.empty if field.required else None
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)


def _sentence(description: str) -> str:
    """A catalogue description as Discord shows it: capitalised, and within Discord's 1 to 100 characters
    (checked here, when the bot is built, rather than by a refused sync at deploy)."""
    if not 1 <= len(description) <= DESCRIPTION_LIMIT:
        raise ValueError(f"Discord takes descriptions of 1 to {DESCRIPTION_LIMIT} characters, not {description!r}")
    return description[:1].upper() + description[1:]


@app_commands.context_menu(name="Summarize")
@app_commands.guild_only()
async def summarize_message(interaction: Interaction, message: discord.Message) -> None:
    # The interaction carries the message, so no message-content intent is needed.
    await start_draft(interaction, "summary", {"text": message.content})
