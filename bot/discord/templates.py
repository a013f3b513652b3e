"""`/templates` for moderators: write a new version of a task's prompt, preview it, save it; list and show.

`/templates new` opens a form prefilled with the task's built-in prompt; its submit shows the moderator,
privately, the rendered prompt and a sample draft the model writes now, with a Save button. Save stores
exactly what the preview showed (the same use case as `copydesk templates new`), as the task's next
version, logged. Nothing is stored before Save; the preview waits 15 minutes (bot/templates.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import discord
from discord import app_commands
from discord.app_commands import Choice

from bot.discord.components import Button, Form
from bot.discord.context import Interaction, member_of, require_moderator, service_of
from bot.discord.errors import in_time, tell
from bot.discord.model_text import shown
from bot.discord.safe_text import reveal
from bot.errors import MEMBER_ERRORS
from bot.templates import Preview
from generation import TASKS, InputError, get_task
from generation.templates import BrandVoice, PromptTemplate, words

MESSAGE_LIMIT = 2000  # characters of a message's content (Discord's limit)
INPUT_MAX_CHARS = 4000  # Discord's limit for a form's text input
USE, NEVER = "use:", "never:"
WORDS_HELP = f"one line `{USE} words, to, use` and one `{NEVER} words, never, to, use`"
# The form's inputs: custom_id, label, required, short.
FORM_INPUTS = (("system", "System prompt", True, False), ("template", "Template ({field} for each field)", True, False),
               ("tone", "Tone words, separated by commas", False, True),
               ("words", "Words to use / never to use", False, False),
               ("sample", "A sample of house copy (optional)", False, False))

templates_group = app_commands.Group(name="templates", description="Moderators: versions of each task's prompt",
                                     guild_only=True, default_permissions=discord.Permissions(manage_messages=True))
task_choices = app_commands.choices(task=[Choice(name=name, value=name) for name in TASKS])


@templates_group.command(name="new", description="Moderators: write a new version of a task's prompt and preview it")
@app_commands.describe(task="The task whose prompt the version writes")
@task_choices
async def new_version(interaction: Interaction, task: str) -> None:
    if not await require_moderator(interaction):
        return
    await interaction.response.send_modal(TemplateForm(task))


@templates_group.command(name="list", description="Moderators: the template versions of every task, or of one")
@app_commands.describe(task="Only this task's versions")
@task_choices
async def list_versions(interaction: Interaction, task: str | None = None) -> None:
    if not await require_moderator(interaction):
        return
    versions = await service_of(interaction).templates.list(task)
    lines = [f"- `{version.name}`{' (built-in)' if version.name == get_task(version.task).template_version else ''}"
             f" — {reveal(version.template, 120)}" for version in versions]
    await tell(interaction, _cut("\n".join(lines)))


@templates_group.command(name="show", description="Moderators: one template version, whole")
@app_commands.describe(name="The version's name, as /templates list shows it (e.g. ad-v2)")
async def show_version(interaction: Interaction, name: app_commands.Range[str, 1, 32]) -> None:
    if not await require_moderator(interaction):
        return
    version = await service_of(interaction).templates.show(name)
    await tell(interaction, _cut(version_text(version)))


def version_text(version: PromptTemplate) -> str:
    voice = version.brand_voice
    lines = [f"**{version.name}** ({version.task})", f"**System prompt**\n{reveal(version.system_prompt, 800)}",
             f"**Template**\n{reveal(version.template, 400)}"]
    for label, chosen in (("Tone", voice.tone), ("Use", voice.use), ("Never use", voice.avoid)):
        if chosen:
            lines.append(f"**{label}**: {reveal(', '.join(chosen), 200)}")
    if voice.sample:
        lines.append(f"**House copy**\n{reveal(voice.sample, 300)}")
    return "\n".join(lines)


class TemplateForm(Form, title="New prompt version"):
    """Five inputs, Discord's most: system prompt, template, tone words, words to use and never to use,
    a sample of house copy; prefilled with the task's built-in prompt, or with what the moderator wrote."""

    def __init__(self, task_name: str, texts: Mapping[str, str] | None = None) -> None:
        super().__init__(None, custom_id=f"copydesk:template-modal:{task_name}")
        task = get_task(task_name)
        written = texts or {"system": task.system_prompt, "template": task.template, "words": f"{USE} \n{NEVER} "}
        self.task_name = task_name
        self.title = f"New version of the {task_name} prompt"
        self.inputs = {custom_id: discord.ui.TextInput[TemplateForm](
            label=label, custom_id=custom_id, default=written.get(custom_id) or None, required=required,
            max_length=200 if short else INPUT_MAX_CHARS,
            style=discord.TextStyle.short if short else discord.TextStyle.paragraph)
            for custom_id, label, required, short in FORM_INPUTS}
        for item in self.inputs.values():
            self.add_item(item)

    async def submit(self, interaction: Interaction) -> None:
        if not await require_moderator(interaction):
            return
        texts = {custom_id: item.value for custom_id, item in self.inputs.items()}
        templates = service_of(interaction).templates
        edit = EditTemplateButton(templates.keep_unsaved(self.task_name, texts))
        try:
            use, avoid = _use_and_avoid(texts["words"])
            voice = BrandVoice(tone=words(texts["tone"], "tone words"), use=use, avoid=avoid,
                               sample=texts["sample"].strip())
            await templates.check(self.task_name, texts["system"], texts["template"], voice)  # at once, if refused
        except MEMBER_ERRORS as error:  # what was written is kept: the moderator fixes it rather than starts again
            await interaction.response.send_message(f"⚠️ {error}", view=_view(edit), ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)  # the sample draft takes seconds
        preview = await templates.preview(self.task_name, texts["system"], texts["template"], voice,
                                          by=member_of(interaction).id)
        await interaction.followup.send(preview_text(preview, interaction.client.links_allowed_domains),
                                        view=_view(SaveTemplateButton(preview.token), edit), ephemeral=True,
                                        suppress_embeds=True)


def preview_text(preview: Preview, allowed_domains: tuple[str, ...]) -> str:
    """The rendered prompt and the sample draft, cut to fit one message."""
    task = preview.version.task
    return _cut("\n".join([
        f"**Preview of a new {task} prompt version** — not saved yet",
        f"**System prompt, as the model reads it**\n{reveal(preview.prompt.system, 800)}",
        f"**Sample request, rendered**\n{reveal(preview.prompt.user, 300)}",
        f"**Sample draft**\n{reveal(shown(preview.text, allowed_domains), 500) or '(the model wrote nothing)'}",
        f"Save stores it as the next {task} version; new drafts go on using the current one.",
    ]))


class TemplateButton(Button):
    """A moderator's button about what `Templates` keeps under a token: `copydesk:template-<action>:<token>`."""

    action: ClassVar[str]
    label: ClassVar[str]
    emoji: ClassVar[str]
    style: ClassVar[discord.ButtonStyle]

    def __init_subclass__(cls, *, action: str, **kwargs: Any) -> None:
        super().__init_subclass__(template=rf"copydesk:template-{action}:(?P<token>[A-Za-z0-9_-]{{1,40}})", **kwargs)
        cls.action = action

    def __init__(self, token: str) -> None:
        self.token = token
        super().__init__(discord.ui.Button(label=self.label, emoji=self.emoji, style=self.style,
                                           custom_id=f"copydesk:template-{self.action}:{token}"))

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: Any,
                             match: re.Match[str]) -> TemplateButton:
        return cls(match["token"])

    async def check(self, interaction: Interaction) -> bool:
        return await require_moderator(interaction)


class SaveTemplateButton(TemplateButton, action="save"):
    """Stores the version the preview showed."""

    label, emoji, style = "Save", "💾", discord.ButtonStyle.primary

    async def on_click(self, interaction: Interaction) -> None:
        member = member_of(interaction)
        saved = await in_time(interaction, service_of(interaction).templates.save_preview(
            self.token, by=member.id, guild_id=member.guild_id))
        await tell(interaction, f"Saved as **{saved.name}**; `/templates show {saved.name}` shows it.")


class EditTemplateButton(TemplateButton, action="edit"):
    """Opens the form again with what the moderator wrote (refused, or previewed)."""

    label, emoji, style = "Edit", "✏️", discord.ButtonStyle.secondary

    async def on_click(self, interaction: Interaction) -> None:
        task_name, texts = service_of(interaction).templates.unsaved(self.token)
        await interaction.response.send_modal(TemplateForm(task_name, texts))


def _view(*buttons: Button) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(button)
    return view


def _use_and_avoid(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The form's one input for both lists: a line starting `use:`, a line starting `never:`."""
    use: list[str] = []
    avoid: list[str] = []
    for line in filter(None, (line.strip() for line in text.splitlines())):
        lowered = line.lower()
        if lowered.startswith(USE):
            use.append(line[len(USE):])
        elif lowered.startswith(NEVER):
            avoid.append(line[len(NEVER):])
        else:
            raise InputError(f"the words to use and never to use are {WORDS_HELP}; "
                             f"{reveal(line, 40)!r} starts with neither")
    return words("\n".join(use), "words to use"), words("\n".join(avoid), "words never to use")


def _cut(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"
