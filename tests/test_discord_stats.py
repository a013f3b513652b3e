"""`/stats` end to end: the real bot against the fake Discord, a real SQLite file, the PNG as Discord received it."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from bot.charts import SIZE_PX
from bot.discord.client import CopydeskBot, publish_commands
from storage import Repository
from support.discord_harness import EPHEMERAL
from support.fake_discord import FakeDiscord


async def seed(repository: Repository, guild_id: str) -> None:
    """Here: base 12 drafts (6 👍), v2 12 drafts (10 👍); in another server, drafts of a version of its own."""
    for index in range(30):
        version, guild = ("base", guild_id) if index < 12 else ("v2", guild_id) if index < 24 else ("theirs", "elsewhere")
        draft = await repository.create_draft(
            task="ad" if index % 6 else "blog", inputs={"product": f"lamp {index}"}, system_prompt="You write ads.",
            user_prompt=f"Write an ad for lamp {index}.", template_version="ad-v1", model="SmolLM2-135M-Instruct",
            quantization="nf4", sampling={}, seed=0, author_id="author", guild_id=guild, model_version=version)
        await repository.finish_draft(draft.id, output=f"Lamp {index}.", prompt_tokens=5, completion_tokens=20 + index,
                                      latency_ms=1, ttft_ms=100 + index)
        liked = index % 2 == 0 if version == "base" else index % 6 != 1
        await repository.rate(draft.id, f"rater-{index % 3}", 1 if liked else -1)


async def run_stats(fake: FakeDiscord, **options: Any) -> dict[str, Any]:
    interaction = await fake.invoke_command("stats", options, user=fake.guild.member("alice"))
    response = await interaction.wait_for_response()
    if response["type"] != 5:  # answered at once, not deferred
        return response["data"]
    assert response["data"]["flags"] == EPHEMERAL and interaction.response_delay < 3
    return await interaction.wait_for_original(lambda message: bool(message["content"]), timeout=60)


async def test_stats_compares_this_servers_versions_and_attaches_a_readable_chart(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository
) -> None:
    await publish_commands(fake.token, fake.guild.id)
    await seed(repository, str(fake.guild.id))

    message = await run_stats(fake)
    lines = message["content"].splitlines()
    assert lines[0].startswith("**base** — 12 drafts, 12 rated · 👍 50% [25–75] (12 votes) · ")
    assert lines[1].startswith("**v2** — 12 drafts, 12 rated · 👍 83% [55–95] (12 votes) · ")
    assert "theirs" not in message["content"], "a server sees its own drafts only"
    assert lines[-1] == "verdict: not enough yet: 12 of 100 counted votes for base (and 1 more short)"
    assert lines[-2].startswith("rule: every version needs 100 counted votes")
    [attachment] = message["attachments"]
    assert attachment["filename"] == "copydesk-stats.png"
    chart = Image.open(io.BytesIO(fake.attachment_data[attachment["id"]]))
    chart.verify()  # a whole PNG, decodable
    assert (chart.format, chart.size) == ("PNG", SIZE_PX)

    blogs = await run_stats(fake, task="blog", since="2026-01-01")
    assert [line.split(" — ")[0] for line in blogs["content"].splitlines()[:2]] == ["**base**", "**v2**"]
    assert "— 2 drafts, 2 rated" in blogs["content"]

    nothing = await run_stats(fake, since="2999-01-01")
    assert nothing["content"] == "No finished drafts here yet since 2999-01-01." and not nothing["attachments"]
    bad_date = await run_stats(fake, since="last week")
    assert bad_date["content"] == "⚠️ since: write a date as YYYY-MM-DD, e.g. 2026-11-01 (got 'last week')"


async def test_many_versions_fit_one_message_with_the_verdict(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository
) -> None:
    await publish_commands(fake.token, fake.guild.id)
    for index in range(24):
        draft = await repository.create_draft(
            task="ad", inputs={"product": "lamp"}, system_prompt="s", user_prompt=f"u{index}", template_version="ad-v1",
            model="SmolLM2-135M-Instruct", quantization="nf4", sampling={}, seed=0, author_id="author",
            guild_id=str(fake.guild.id), model_version=f"version-with-a-long-name-{index:02d}")
        await repository.finish_draft(draft.id, output="Lamp.", prompt_tokens=5, completion_tokens=9, latency_ms=1,
                                      ttft_ms=1)
        await repository.rate(draft.id, "rater", 1)
    message = await run_stats(fake)
    lines = message["content"].splitlines()
    assert len(message["content"]) <= 2000 and lines[-1].startswith("verdict: not enough yet")
    shown = [line for line in lines if line.startswith("**version-with-a-long-name-")]
    assert 0 < len(shown) < 24 and lines[len(shown)] == (f"… and {24 - len(shown)} more versions: `copydesk stats` "
                                                         "lists them all")
