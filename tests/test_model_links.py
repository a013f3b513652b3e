"""Nothing a model writes can lure a member (OWASP LLM05): through the fake Discord, a draft full of
links — bare, masked, angle-bracketed, on an allowed domain — is streamed, finished, flagged and
reviewed, and every body the bot sends that carries it is checked.

The engine here is scripted (it streams a fixed text word by word): Discord rendering is under
test, not the model.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.config import ModerationSettings
from bot.discord.client import CopydeskBot
from bot.service import DraftService, Policy
from generation import ModelInfo, Prompt, Sampling, StreamUpdate
from generation.slots import EngineLoad
from storage import Repository
from support.discord_harness import finished, run_command, start_bot, stop_bot
from support.fake_discord import FakeDiscord, RecordedRequest

SUPPRESS_EMBEDS = 1 << 2
LURE = ("**Big news!** [your account](https://evil.example/steal?next=(home)) needs you: https://evil.example/login "
        "or <https://angle.example/ok>. Shop at https://brand.example/shop and [brand](https://brand.example/a). "
        "Code stays: `https://code.example/x`")
MESSAGE_ROUTES = ("/webhooks/{webhook_id}/{webhook_token}", "/channels/{channel_id}/messages",
                  "/interactions/{interaction_id}/{interaction_token}/callback")


class ScriptedEngine:
    """An engine that streams `text` a word at a time, as the local one streams tokens."""

    info = ModelInfo(name="scripted", quantization="none", device="cpu", seed=0)

    def __init__(self, text: str) -> None:
        self.words = text.split(" ")

    async def stream(self, prompt: Prompt, sampling: Sampling, request_id: str,
                     owner: str = "") -> AsyncIterator[StreamUpdate]:
        for count in range(1, len(self.words) + 1):
            await asyncio.sleep(0.05)
            yield StreamUpdate(" ".join(self.words[:count]), 10, count, finished=count == len(self.words))

    def cancel(self, request_id: str) -> bool:
        return False

    def load(self) -> EngineLoad:
        return EngineLoad(running=0, waiting=0, slots=1)

    async def close(self) -> None:
        return None


@pytest.fixture
async def bot(fake: FakeDiscord, repository: Repository, policy: Policy) -> AsyncIterator[CopydeskBot]:
    moderation = ModerationSettings(review_channel_id=fake.guild.channel("moderation").id,
                                    links_allowed_domains=("brand.example",), detect_personal_data=False,
                                    detect_prompt_leak=False)
    service = DraftService(repository, ScriptedEngine(LURE), policy)
    running, task = await start_bot(fake, service, moderation)
    yield running
    await stop_bot(running, task)


def bodies_with_model_text(fake: FakeDiscord) -> list[tuple[dict[str, Any], RecordedRequest]]:
    """(message body, request) for every message the bot sent or edited that carries part of the draft."""
    found = []
    for request in fake.requests:
        if request.method not in ("POST", "PATCH") or not (request.route or "").startswith(MESSAGE_ROUTES):
            continue
        body = request.json if isinstance(request.json, dict) else {}
        if request.route and request.route.endswith("/callback"):
            body = body.get("data") or {}
        if "Big" in str(body.get("content", "")) or "evil" in str(body.get("content", "")):
            found.append((body, request))
    return found


def assert_shows_every_address(content: str) -> None:
    outside_code = re.sub(r"`[^`]*`", "", content)
    for masked in re.findall(r"\]\(\s*<?(https?://[^\s)>]+)", outside_code):
        assert masked.startswith("https://brand.example/"), f"a masked link survived: {content!r}"
    for address in re.findall(r"https?://[^\s<>()]+", outside_code):
        if "brand.example" not in address:
            assert f"<{address}" in outside_code, f"{address} would unfurl or be clickable unseen: {content!r}"


async def test_links_a_model_writes_never_unfurl_and_always_show_their_address(
    fake: FakeDiscord, bot: CopydeskBot,
) -> None:
    alice = fake.guild.member("alice")
    interaction, message = await run_command(fake, "draft", {"product": "a lantern", "audience": "campers"}, "ad",
                                             user=alice)
    draft_id = int(re.search(r"draft #(\d+)", message["content"])[1])  # type: ignore[index]
    opened = await fake.click_button(message, f"copydesk:flag:{draft_id}", user=alice)
    form = (await opened.wait_for_response())["data"]["custom_id"]
    await (await fake.submit_modal(form, {"reason": "suspicious links"}, user=alice)).wait_for_response()
    post = await fake.wait_for(lambda: next((m for m in fake.channel_messages(fake.guild.channel("moderation"))
                                             if m.get("components")), None))
    review = await fake.invoke_command("review", {}, user=fake.guild.member("mia"))
    await review.wait_for_response()
    await fake.wait_for(lambda: len(review.followups) == 1 or None)
    decided = await fake.click_button(post, post["components"][0]["components"][1]["custom_id"],
                                      user=fake.guild.member("mia"))
    await decided.wait_for_response()

    sent = bodies_with_model_text(fake)
    kinds = {(request.method, request.route) for _, request in sent}
    assert len(kinds) >= 4, kinds  # streaming and final edits, the review post, /review's followup, the decision
    for body, request in sent:
        assert body.get("flags", 0) & SUPPRESS_EMBEDS, f"{request.method} {request.path} may unfurl links"
        assert_shows_every_address(body["content"])
    final = interaction.original
    assert final is not None and finished(final)
    assert "your account (<https://evil.example/steal?next=(home)>)" in final["content"]
    assert "<https://evil.example/login>" in final["content"] and "<https://angle.example/ok>" in final["content"]
    assert "https://brand.example/shop" in final["content"] and "[brand](https://brand.example/a)" in final["content"]
    assert "`https://code.example/x`" in final["content"]
    assert final["flags"] & SUPPRESS_EMBEDS and post["flags"] & SUPPRESS_EMBEDS
