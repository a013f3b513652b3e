"""What a model wrote, as it goes into a message: links shown for what they are, never unfurled.

Model output is untrusted (OWASP LLM05). `shown` rewrites it with `bot.discord.links` so every link
shows its real address in angle brackets (except the configured allowed domains), and every message
that carries it is sent with Discord's SUPPRESS_EMBEDS flag, so not even an allowed link unfurls
into a preview. discord.py 2.7 passes that flag on sends but not on `edit_original_response`:
`edit_original` is that method with the flag, on discord.py's webhook helpers (bounded to 2.7 in
pyproject; tests/test_model_links.py checks that every body carries the flag).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import discord
from discord.interactions import InteractionMessage, _InteractionMessageState
from discord.utils import MISSING
from discord.webhook.async_ import async_context, handle_message_parameters

from bot.discord.links import disarm_links

SUPPRESS_EMBEDS = discord.MessageFlags(suppress_embeds=True)
NO_MENTIONS = discord.AllowedMentions.none()


def shown(text: str, allowed_domains: tuple[str, ...]) -> str:
    """Model text fit to show: every link shows where it leads."""
    return disarm_links(text, allowed_domains)


async def edit_original(interaction: discord.Interaction[Any], *, content: str, view: discord.ui.View | None = MISSING,
                        attachments: Sequence[discord.File] = MISSING) -> InteractionMessage:
    """`interaction.edit_original_response` that also sets SUPPRESS_EMBEDS, and never lets a mention ping."""
    state = interaction._state
    with handle_message_parameters(content=content, view=view, attachments=attachments, allowed_mentions=NO_MENTIONS,
                                   previous_allowed_mentions=state.allowed_mentions, flags=SUPPRESS_EMBEDS) as params:
        data = await async_context.get().edit_original_interaction_response(
            interaction.application_id, interaction.token, session=interaction._session, proxy=state.http.proxy,
            proxy_auth=state.http.proxy_auth, payload=params.payload, multipart=params.multipart, files=params.files,
        )
    # As discord.py builds it: its state proxy and channel types are looser than its annotations.
    message = InteractionMessage(state=_InteractionMessageState(interaction, state),  # type: ignore[arg-type]
                                 channel=interaction.channel, data=data)  # type: ignore[arg-type]
    if view and not view.is_finished() and view.is_dispatchable():
        state.store_view(view, message.id)
    return message
