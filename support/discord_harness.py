"""What the Discord end-to-end tests share: starting the real bot against the fake, and reading its messages."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.config import ExportSettings, ModerationSettings
from bot.discord.client import CopydeskBot
from bot.service import DraftService
from support.fake_discord import FakeDiscord

MESSAGE_ROUTES = ("/webhooks/{webhook_id}/{webhook_token}", "/channels/{channel_id}/messages")
EPHEMERAL = 64
DEFERRED = 5


async def start_bot(fake: FakeDiscord, service: DraftService, moderation: ModerationSettings = ModerationSettings(),
                    exports: ExportSettings = ExportSettings()) -> tuple[CopydeskBot, asyncio.Task[None]]:
    bot = CopydeskBot(service, moderation, exports, guild_ready_timeout=0.05)
    task = asyncio.create_task(bot.start(fake.token))
    await fake.wait_until_connected()
    await bot.wait_until_ready()
    return bot, task


async def stop_bot(bot: CopydeskBot, task: asyncio.Task[None]) -> None:
    await bot.close()
    await task


def assert_nothing_the_model_wrote_pings(fake: FakeDiscord) -> None:
    """Every message the bot sent allows no mention at all, except a fallback's ping of its own member."""
    for request in fake.requests:
        body = request.json if isinstance(request.json, dict) else {}
        if request.method in ("POST", "PATCH") and "content" in body and request.route \
                and request.route.startswith(MESSAGE_ROUTES):
            mentions = body.get("allowed_mentions")
            assert mentions is not None and mentions.get("parse") == [], request
            assert mentions.get("roles", []) == [] and len(mentions.get("users", [])) <= 1, request


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [component["custom_id"] for row in message.get("components", []) for component in row["components"]]


def finished(message: dict[str, Any]) -> bool:
    """A draft's final message: it carries the feedback buttons (a streaming one only Cancel)."""
    return any(custom_id.startswith("copydesk:rate:") for custom_id in custom_ids(message))


async def run_command(fake: FakeDiscord, name: str, options: dict[str, str], subcommand: str | None = None,
                      **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Invoke a drafting command and wait for its final message (the one with buttons)."""
    interaction = await fake.invoke_command(name, options, subcommand=subcommand, **kwargs)
    response = await interaction.wait_for_response()
    assert response["type"] == DEFERRED and interaction.response_delay < 3
    message = await interaction.wait_for_original(finished, timeout=60)
    return interaction, message
