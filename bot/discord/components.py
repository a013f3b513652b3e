"""Buttons and forms: each kind is one class, and every failure in one takes the one error path.

A button is a `discord.ui.DynamicItem` (its state is in its `custom_id`, so it works after a
restart) that registers itself by being defined with a `template`: the bot adds every registered
button at start and answers a click that fits none of them, so there is no list to keep in step.
discord.py only logs what a dynamic item's check or callback raises, leaving the member with
"This interaction failed"; here both, and a form's submit, take `bot.discord.errors.reporting`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import discord

from bot.discord.context import Interaction
from bot.discord.deliveries import first_delivery
from bot.discord.errors import reporting

NEVER = r"(?!)"  # the template of a base class: matches no custom_id


class Button(discord.ui.DynamicItem[discord.ui.Button[Any]], template=NEVER):
    """A persistent button. Subclasses defined with `template=` are registered; without it they are
    bases for other buttons. Define `check` (who may press it) and `on_click` (what it does)."""

    registered: ClassVar[list[type[Button]]] = []
    draft_id: int | None = None  # named in the log and the apology should the button fail

    def __init_subclass__(cls, *, template: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(template=template or NEVER, **kwargs)
        if template is not None:
            Button.registered.append(cls)

    async def check(self, interaction: Interaction) -> bool:
        """Whether this member may press the button; one who may not is told why, here."""
        return True

    async def on_click(self, interaction: Interaction) -> None:
        raise NotImplementedError

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        return bool(await reporting(interaction, self.draft_id, self._acts(interaction)))

    async def _acts(self, interaction: Interaction) -> bool:
        """A click acts once however often Discord delivers it, and only for a member `check` lets through."""
        return await first_delivery(interaction) and await self.check(interaction)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await reporting(interaction, self.draft_id, self.on_click(interaction))


def is_ours(custom_id: str) -> bool:
    """Whether a registered button takes this custom_id."""
    return any(button.__discord_ui_compiled_template__.fullmatch(custom_id) for button in Button.registered)


class Form(discord.ui.Modal):
    """A modal, about one draft or none. Define `submit`; what it raises takes the one error path (as a button's
    does, rather than through `on_error`, whose signature discord.py's own classes disagree on)."""

    draft_id: int | None  # a form about one draft declares it `int`, as a button does

    def __init__(self, draft_id: int | None, custom_id: str) -> None:
        super().__init__(custom_id=custom_id)
        self.draft_id = draft_id

    async def submit(self, interaction: Interaction) -> None:
        raise NotImplementedError

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        """A submit acts once however often Discord delivers it."""
        return bool(await reporting(interaction, self.draft_id, first_delivery(interaction)))

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await reporting(interaction, self.draft_id, self.submit(interaction))
