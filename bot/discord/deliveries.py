"""One effect per interaction: Discord may deliver an interaction twice, and a client may retry.

Every command, button and form claims its interaction's id before it acts (the command tree's and
the component bases' `interaction_check`, see `bot.discord.tree` and `bot.discord.components`);
a repeat finds the id claimed and is dropped without a word, since the first delivery answers it.
The claim is one row keyed by the id (`storage` `deliveries`), so the first wins whatever the
order of arrival, also when both arrive at once.
"""

from __future__ import annotations

import logging

from bot.discord.context import Interaction, service_of

log = logging.getLogger("copydesk.discord")


async def first_delivery(interaction: Interaction) -> bool:
    first = await service_of(interaction).first_delivery(str(interaction.id), interaction.type.name)
    if not first:
        log.info("interaction %s (%s) delivered again: dropped", interaction.id, interaction.type.name)
    return first
