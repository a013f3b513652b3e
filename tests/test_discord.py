"""The Discord front-end end to end: real discord.py against the fake Discord, the real model, a real SQLite file."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import EngineSettings, LimitSettings, load_settings
from bot.discord.client import CopydeskBot, publish_commands, run_bot
from bot.discord.drafting import DraftMessage
from bot.service import DraftProgress, DraftService, Policy
from conftest import NO_AUTOMATIC_CHECKS_ENV, rows
from storage import DraftStatus, Repository
from support.discord_harness import (
    DEFERRED,
    EPHEMERAL,
    custom_ids,
    finished,
    run_command,
    start_bot,
    stop_bot,
)
from support.fake_discord import FakeDiscord
from support.fake_discord.model import resolve_mentions
from support.served import free_port

AD = {"product": "a solar lantern", "audience": "campers", "tone": "playful"}


@pytest.mark.parametrize(
    ("name", "subcommand", "options", "task"),
    [
        ("draft", "ad", AD, "ad"),
        ("write", "blog", {"topic": "night hikes", "length": "short"}, "blog"),
        ("summarize", None, {"text": "The trail closes at dusk. Bring water and a lamp.", "style": "bullets"}, "summary"),
    ],
)
async def test_each_command_defers_streams_and_ends_with_buttons(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository,
    name: str, subcommand: str | None, options: dict[str, str], task: str,
) -> None:
    alice = fake.guild.member("alice")
    interaction, message = await run_command(fake, name, options, subcommand, user=alice)
    [draft] = await repository.recent_drafts()
    assert (draft.task, draft.status, draft.inputs.items() >= options.items()) == (task, DraftStatus.DONE, True)
    assert (draft.author_id, draft.guild_id) == (str(alice.user.id), str(fake.guild.id))
    assert draft.output.strip() and draft.output.strip() in message["content"]
    assert message["content"].startswith(f"-# draft #{draft.id} · {task}")
    assert custom_ids(message) == [f"copydesk:rate:{draft.id}:up", f"copydesk:rate:{draft.id}:down",
                                   f"copydesk:regenerate:{draft.id}", f"copydesk:improve:{draft.id}",
                                   f"copydesk:flag:{draft.id}"]
    edits = [r.at for r in fake.requests if r.method == "PATCH" and interaction.token in r.path]
    streaming = edits[:-1]
    assert all(later - earlier >= 1.0 for earlier, later in zip(streaming, streaming[1:])), "edits are throttled"


async def test_the_context_menu_summarizes_a_message(fake: FakeDiscord, bot: CopydeskBot, repository: Repository) -> None:
    target = await fake.post_user_message("Meeting moved to Friday at 10. Bring the Q3 numbers and the slides.",
                                          user=fake.guild.member("mia"))
    interaction = await fake.invoke_message_command("Summarize", target)
    assert (await interaction.wait_for_response())["type"] == DEFERRED
    message = await interaction.wait_for_original(finished, timeout=60)
    [draft] = await repository.recent_drafts()
    assert draft.task == "summary" and draft.inputs["text"] == target["content"]
    assert draft.output.strip() in message["content"]


async def test_buttons_rate_regenerate_improve_and_flag(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository
) -> None:
    _, message = await run_command(fake, "draft", AD, "ad")
    [draft] = await repository.recent_drafts()
    alice, mia = fake.guild.member("alice"), fake.guild.member("mia")

    up = await fake.click_button(message, f"copydesk:rate:{draft.id}:up", user=alice)
    assert (await up.wait_for_response())["data"]["flags"] == EPHEMERAL
    assert "👍 1 · 👎 0" in up.response["data"]["content"]
    down = await fake.click_button(message, f"copydesk:rate:{draft.id}:down", user=mia)
    assert "👍 1 · 👎 1" in (await down.wait_for_response())["data"]["content"]

    improve = await fake.click_button(message, f"copydesk:improve:{draft.id}", user=mia)
    modal = await improve.wait_for_response()
    assert modal["type"] == 9 and modal["data"]["custom_id"] == f"copydesk:improve-modal:{draft.id}"
    saved = await fake.submit_modal(modal["data"]["custom_id"], {"text": "Charge by day, glow all night."}, user=mia)
    assert "Saved your version" in (await saved.wait_for_response())["data"]["content"]

    flag = await fake.click_button(message, f"copydesk:flag:{draft.id}", user=alice)
    flag_modal = await flag.wait_for_response()
    flagged = await fake.submit_modal(flag_modal["data"]["custom_id"], {"reason": "claims 100 hours"}, user=alice)
    assert "flagged for review" in (await flagged.wait_for_response())["data"]["content"]

    regenerate = await fake.click_button(message, f"copydesk:regenerate:{draft.id}", user=mia)
    assert (await regenerate.wait_for_response())["type"] == DEFERRED
    second = await regenerate.wait_for_original(finished, timeout=60)
    newest = (await repository.recent_drafts())[0]
    assert newest.parent_id == draft.id and newest.author_id == str(mia.user.id)
    assert f"copydesk:rate:{newest.id}:up" in custom_ids(second)

    stored = await repository.get_draft(draft.id)
    assert sorted((r.member_id, r.value) for r in stored.ratings) == sorted(
        [(str(alice.user.id), 1), (str(mia.user.id), -1)])
    assert [i.text for i in stored.improvements] == ["Charge by day, glow all night."]
    assert [(f.reason, f.member_id) for f in stored.flags] == [("claims 100 hours", str(alice.user.id))]


async def test_many_members_clicking_at_once_leave_one_rating_each(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository
) -> None:
    _, message = await run_command(fake, "draft", AD, "ad")
    [draft] = await repository.recent_drafts()
    members = [fake.guild.member(f"member{i}") for i in range(10)]
    clicks = await asyncio.gather(*(
        fake.click_button(message, f"copydesk:rate:{draft.id}:{'up' if i % 3 else 'down'}", user=member)
        for _ in range(3) for i, member in enumerate(members)
    ))
    await asyncio.gather(*(click.wait_for_response(timeout=20) for click in clicks))
    stored = await repository.get_draft(draft.id)
    assert sorted(r.member_id for r in stored.ratings) == sorted(str(m.user.id) for m in members)
    assert await repository.rating_summary(draft.id) == (6, 4)


async def test_buttons_keep_working_after_the_bot_restarts(fake: FakeDiscord, service: DraftService,
                                                           repository: Repository) -> None:
    first, task = await start_bot(fake, service)
    _, message = await run_command(fake, "draft", AD, "ad")
    await stop_bot(first, task)

    second, task = await start_bot(fake, service)
    [draft] = await repository.recent_drafts()
    click = await fake.click_button(message, f"copydesk:rate:{draft.id}:up", user=fake.guild.member("mia"))
    assert "👍 1" in (await click.wait_for_response())["data"]["content"]
    assert await repository.rating_summary(draft.id) == (1, 0)
    await stop_bot(second, task)


async def test_a_long_draft_shows_its_beginning_and_arrives_whole_as_a_file(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository
) -> None:
    captured: list[Any] = []

    async def on_interaction(interaction: Any) -> None:
        captured.append(interaction)

    bot.on_interaction = on_interaction  # type: ignore[attr-defined]
    interaction, _ = await run_command(fake, "write", {"topic": "trail cooking"}, "blog")
    [draft] = await repository.recent_drafts()
    # The tiny model will not write 5000 characters on demand: render such a text through the real path.
    code = "\n".join(f"    step_{i} = prepare(ingredient_{i})  # keep it simple" for i in range(60))
    long_text = "Intro paragraph.\n```python\n" + code + "\n```\n" + "Closing words. " * 150
    await DraftMessage(captured[0], draft).finish(DraftProgress(draft.id, long_text, DraftStatus.DONE))
    message = interaction.original
    assert interaction.followups == [], "one message per draft, so moderation reaches all of it"
    assert len(message["content"]) <= 2000 and message["content"].count("```") % 2 == 0
    assert message["content"].startswith(f"-# draft #{draft.id}") and "Intro paragraph." in message["content"]
    assert custom_ids(message)[0] == f"copydesk:rate:{draft.id}:up"
    [attachment] = message["attachments"]
    assert attachment["filename"] == f"draft-{draft.id}.md"
    assert fake.attachment_data[attachment["id"]].decode() == long_text


async def test_mentions_in_model_output_ping_nobody(fake: FakeDiscord, bot: CopydeskBot,
                                                    repository: Repository) -> None:
    captured: list[Any] = []

    async def on_interaction(interaction: Any) -> None:
        captured.append(interaction)

    bot.on_interaction = on_interaction  # type: ignore[attr-defined]
    role, member = fake.guild.role("Moderator").id, fake.guild.member("mia").user.id
    text = f"Heads up @everyone and @here: <@&{role}> and <@{member}> must read this. @@everyoneeveryone"
    # As Discord would resolve it without allowed_mentions: everybody pinged.
    assert resolve_mentions(text, None, fake.known_users())["mention_everyone"] is True
    interaction, _ = await run_command(fake, "summarize", {"text": text})
    [draft] = await repository.recent_drafts()
    await DraftMessage(captured[0], draft).finish(DraftProgress(draft.id, text, DraftStatus.DONE))
    sent = interaction.original
    assert "@everyone" in sent["content"] and f"<@{member}>" in sent["content"]
    assert (sent["mention_everyone"], sent["mentions"], sent["mention_roles"]) == (False, [], [])


async def test_a_draft_outliving_its_token_ends_as_a_channel_message(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository
) -> None:
    fake.token_lifetime = 0.5
    alice = fake.guild.member("alice")
    interaction = await fake.invoke_command("write", {"topic": "packing light"}, subcommand="blog", user=alice)
    await interaction.wait_for_response()
    channel = fake.guild.channels[0]
    message = await fake.wait_for(lambda: next((m for m in fake.channel_messages(channel)
                                                if m["author"]["id"] == str(fake.bot_user.id) and finished(m)), None),
                                  timeout=60)
    [draft] = await repository.recent_drafts()
    assert draft.status == DraftStatus.DONE
    assert message["content"].startswith(f"<@{alice.user.id}>, your draft is ready:")
    assert draft.output.strip() in message["content"]
    assert [m["id"] for m in message["mentions"]] == [str(alice.user.id)]
    assert f"copydesk:rate:{draft.id}:up" in custom_ids(message)


@pytest.fixture
async def patient_bot(fake: FakeDiscord, repository: Repository, engine: Any,
                      policy: Policy) -> AsyncIterator[CopydeskBot]:
    """A bot whose drafts are long enough to act on while they stream."""
    bot, task = await start_bot(fake, DraftService(repository, engine, replace(policy, engine=EngineSettings(max_new_tokens=300))))
    yield bot
    await stop_bot(bot, task)


async def test_a_draft_outliving_its_token_leaves_no_half_written_reply(
    fake: FakeDiscord, patient_bot: CopydeskBot, repository: Repository
) -> None:
    alice = fake.guild.member("alice")
    interaction = await fake.invoke_command("write", {"topic": "tides"}, subcommand="blog", user=alice)
    streaming = await interaction.wait_for_original(lambda m: "copydesk:cancel:" in str(m.get("components")),
                                                    timeout=30)
    reply_id = interaction.original_id
    fake.token_lifetime = 0.0  # from now on the draft's token is dead; Cancel ends the draft at once
    [draft] = await repository.recent_drafts()
    await fake.click_button(streaming, f"copydesk:cancel:{draft.id}", user=alice)
    channel = fake.guild.channels[0]
    ended = await fake.wait_for(lambda: next((m for m in fake.channel_messages(channel)
                                              if "*Cancelled.*" in m["content"] and not m.get("interaction_metadata")),
                                             None), timeout=30)
    assert ended["content"].startswith(f"<@{alice.user.id}>, your draft is ready:")
    # The streaming reply is gone rather than left half-written, deleted through the channel.
    await fake.wait_for(lambda: reply_id not in fake.messages or None, timeout=10)
    assert any(r.method == "DELETE" and r.route == "/channels/{channel_id}/messages/{message_id}"
               and r.path.endswith(f"/{reply_id}") for r in fake.requests)


async def test_a_queued_draft_shows_its_place_in_line(fake: FakeDiscord, bot: CopydeskBot,
                                                      service: DraftService) -> None:
    capacity = service.engine._config.max_concurrent
    members = [fake.guild.member(f"member{i}") for i in range(capacity + 1)]
    interactions = []
    for member in members:
        interactions.append(await fake.invoke_command("draft", AD, subcommand="ad", user=member))
        await asyncio.sleep(0.05)
    last = interactions[-1]
    waiting = await last.wait_for_original(lambda m: "⏳ Waiting for the model" in m["content"], timeout=30)
    assert "0 draft(s) ahead of yours" in waiting["content"]
    await asyncio.gather(*(i.wait_for_original(finished, timeout=90) for i in interactions))


async def test_member_mistakes_get_a_short_private_answer(fake: FakeDiscord, bot: CopydeskBot,
                                                          repository: Repository) -> None:
    blank = await fake.invoke_command("summarize", {"text": "   "})
    answer = await blank.wait_for_response()
    assert answer["type"] == 4 and answer["data"]["flags"] == EPHEMERAL
    assert answer["data"]["content"] == "⚠️ text is required for /summarize: the text to summarize"
    assert await repository.recent_drafts() == []

    _, message = await run_command(fake, "draft", AD, "ad")
    [draft] = await repository.recent_drafts()
    await repository.delete_draft(draft.id)
    gone = await fake.click_button(message, f"copydesk:rate:{draft.id}:up")
    assert (await gone.wait_for_response())["data"]["content"] == f"⚠️ draft {draft.id} does not exist"


async def test_our_errors_are_logged_with_the_draft_id_and_answered_politely(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository, database: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, message = await run_command(fake, "draft", AD, "ad")
    [draft] = await repository.recent_drafts()
    await database.engine.dispose()
    database.engine.sync_engine.pool._creator = lambda *a, **k: (_ for _ in ()).throw(OSError("disk gone"))
    with caplog.at_level(logging.ERROR, logger="copydesk.discord"):
        click = await fake.click_button(message, f"copydesk:rate:{draft.id}:up")
        content = (await click.wait_for_response())["data"]["content"]
    assert content.startswith(f"Sorry — something went wrong on our side with draft #{draft.id}.")
    assert "Traceback" not in content and "disk gone" not in content
    assert any(f"(draft {draft.id})" in record.getMessage() for record in caplog.records)


async def test_commands_are_published_by_sync_not_on_start(fake: FakeDiscord, bot: CopydeskBot) -> None:
    assert not any(r.method == "PUT" for r in fake.requests), "starting the bot publishes nothing"
    published = await publish_commands(fake.token)
    assert sorted(c.name for c in published) == ["Summarize", "draft", "experiment", "export", "models", "privacy",
                                                 "review", "stats", "status", "summarize", "templates", "write"]
    assert fake.command("draft")["options"][0]["name"] == "ad"
    await publish_commands(fake.token, guild_id=fake.guild.id)
    assert fake.command("write", guild=fake.guild) is not None


async def test_copydesk_run_serves_drafts_from_its_own_model_and_database(
    fake: FakeDiscord, tmp_path: Path, cache_dir: Path
) -> None:
    metrics_port = free_port()
    settings = load_settings(environ={
        "COPYDESK_STORAGE__DATA_DIR": str(tmp_path / "data"), "COPYDESK_MODEL__CACHE_DIR": str(cache_dir),
        "COPYDESK_ENGINE__MAX_NEW_TOKENS": "16", "COPYDESK_MODEL__DEVICE": "cpu", **NO_AUTOMATIC_CHECKS_ENV,
        "COPYDESK_METRICS__PORT": str(metrics_port),
    })
    running = asyncio.create_task(run_bot(settings, fake.token, guild_ready_timeout=0.05))
    await fake.wait_until_connected(timeout=120)
    fake.rate_limit_next("PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original", retry_after=0.3)
    interaction = await fake.invoke_command("draft", AD, subcommand="ad")
    message = await interaction.wait_for_original(finished, timeout=60)
    assert any(r.status == 429 for r in fake.requests), "a rate limit was answered and honoured"
    metrics = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    [(output, tokens)] = rows(tmp_path / "data" / "copydesk.sqlite3",
                              "SELECT output, completion_tokens FROM drafts WHERE status = 'done'")
    assert output.strip() in message["content"]
    assert metrics["copydesk_drafts_total"] == {(("status", "done"), ("task", "ad")): 1.0}
    assert metrics["copydesk_generated_tokens_total"] == {(): tokens}
    assert metrics["copydesk_time_to_first_token_seconds_count"] == {(("task", "ad"),): 1.0}
    assert metrics["copydesk_engine_slots"] == {(): 16.0} and metrics["copydesk_queue_depth"] == {(): 0.0}
    assert metrics["copydesk_model_info"] == {
        (("device", "cpu"), ("name", "SmolLM2-135M-Instruct"), ("quantization", "int4")): 1.0}
    assert metrics["process_resident_memory_bytes"][()] > 100e6, "the model's process, measured"
    assert metrics["copydesk_event_loop_lag_seconds_count"][()] > 0, "the loop's lag is sampled while it serves"


async def test_copydesk_run_can_shard_its_gateway_connection(fake: FakeDiscord, tmp_path: Path, cache_dir: Path) -> None:
    """discord.py's AutoShardedClient, as configured past 2,500 servers; the fake serves one shard of one."""
    settings = load_settings(environ={
        "COPYDESK_STORAGE__DATA_DIR": str(tmp_path / "data"), "COPYDESK_MODEL__CACHE_DIR": str(cache_dir),
        "COPYDESK_ENGINE__MAX_NEW_TOKENS": "8", "COPYDESK_MODEL__DEVICE": "cpu", "COPYDESK_DISCORD__SHARDS": "1",
        **NO_AUTOMATIC_CHECKS_ENV,
    })
    running = asyncio.create_task(run_bot(settings, fake.token, guild_ready_timeout=0.05))
    await fake.wait_until_connected(timeout=120)
    interaction = await fake.invoke_command("draft", AD, subcommand="ad")
    await interaction.wait_for_original(finished, timeout=60)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    [identify] = [p["d"] for p in fake.gateway.received if p["op"] == 2]
    assert identify["shard"] == [0, 1]
    assert rows(tmp_path / "data" / "copydesk.sqlite3", "SELECT status FROM drafts") == [("done",)]


async def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Prometheus' text format, parsed by its own parser: sample name → labels → value."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples



async def test_a_member_can_cancel_their_draft_while_it_streams(
    fake: FakeDiscord, patient_bot: CopydeskBot, repository: Repository
) -> None:
    alice, member = fake.guild.member("alice"), fake.guild.member("member0")
    interaction = await fake.invoke_command("write", {"topic": "a week on the coast path"}, subcommand="blog",
                                            user=alice)
    streaming = await interaction.wait_for_original(lambda m: "copydesk:cancel:" in str(m.get("components")),
                                                    timeout=30)
    [draft] = await repository.recent_drafts()
    assert custom_ids(streaming) == [f"copydesk:cancel:{draft.id}"]
    other = await fake.click_button(streaming, f"copydesk:cancel:{draft.id}", user=member)
    assert "only the member who asked" in (await other.wait_for_response())["data"]["content"]
    mine = await fake.click_button(streaming, f"copydesk:cancel:{draft.id}", user=alice)
    assert (await mine.wait_for_response())["data"]["content"] == f"Cancelling draft #{draft.id}."
    final = await interaction.wait_for_original(lambda m: "*Cancelled.*" in m["content"], timeout=30)
    assert final["components"] == []
    stored = await repository.get_draft(draft.id)
    assert stored.status == DraftStatus.CANCELLED and stored.completion_tokens is None


async def test_one_member_flooding_the_queue_does_not_hold_back_another_members_draft(
    fake: FakeDiscord, repository: Repository, engine: Any, policy: Policy
) -> None:
    generous = DraftService(repository, engine, replace(policy, limits=LimitSettings(waiting_per_member=0,
                                                                                     per_member_per_minute=0)))
    bot, task = await start_bot(fake, generous)
    try:
        capacity = engine._config.max_concurrent
        flooder, other = fake.guild.member("member0"), fake.guild.member("member1")
        flood = []
        for _ in range(capacity + 4):
            flood.append(await fake.invoke_command("draft", AD, subcommand="ad", user=flooder))
            await asyncio.sleep(0.02)
        await fake.wait_for(lambda: any("⏳" in ((i.original or {}).get("content") or "") for i in flood) or None)
        mine = await fake.invoke_command("draft", AD, subcommand="ad", user=other)
        waiting = await mine.wait_for_original(lambda m: "⏳" in m["content"] or finished(m), timeout=30)
        if not finished(waiting):
            assert "— 0 draft(s) ahead of yours" in waiting["content"], "next in line, ahead of the flood"
        await mine.wait_for_original(finished, timeout=90)
        still_waiting = [i for i in flood if not finished(i.original or {})]
        assert len(still_waiting) >= 2, "the other member's draft was served before the flood drained"
        await asyncio.gather(*(i.wait_for_original(finished, timeout=120) for i in flood))
    finally:
        await stop_bot(bot, task)


async def test_a_member_over_a_limit_is_told_why_privately(fake: FakeDiscord, bot: CopydeskBot,
                                                           repository: Repository) -> None:
    member = fake.guild.member("member2")
    asked = [await fake.invoke_command("draft", AD, subcommand="ad", user=member) for _ in range(4)]
    refused = await fake.wait_for(lambda: next((i for i in asked if i.followups and i.original is None), None),
                                  timeout=30)
    [note] = refused.followups
    assert note["flags"] & EPHEMERAL and note["content"] == "⚠️ you already have 3 drafts waiting; ask again when one of them is done"
    await asyncio.gather(*(i.wait_for_original(finished, timeout=60) for i in asked if i is not refused))
    assert len(await repository.recent_drafts()) == 3


async def test_a_draft_past_its_deadline_is_marked_and_its_member_told(
    fake: FakeDiscord, repository: Repository, engine: Any, policy: Policy
) -> None:
    hurried = DraftService(repository, engine, replace(policy, engine=EngineSettings(max_new_tokens=300, timeout_s=1.0)))
    bot, task = await start_bot(fake, hurried)
    try:
        interaction = await fake.invoke_command("write", {"topic": "a long walk along the coast"}, subcommand="blog")
        final = await interaction.wait_for_original(lambda m: "failed" in m["content"], timeout=30)
        assert "⚠️ This draft failed: stopped at its deadline of 1 s" in final["content"]
        [draft] = await repository.recent_drafts()
        assert draft.status == DraftStatus.FAILED
    finally:
        await stop_bot(bot, task)
