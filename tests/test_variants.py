"""Variants: several drafts for one request, written in one batch, shown in one message, one of them picked.

End to end through real discord.py against the fake Discord, the real model and a real SQLite file; the
pick becomes a DPO pair in a real export folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli import main
from bot.config import ExportSettings, ModerationSettings, PrivacySettings
from bot.console import Console
from bot.discord.client import CopydeskBot
from bot.discord.drafting import HELD
from bot.discord.variants import final_content
from bot.service import DraftService, Member, Policy
from conftest import rows
from generation import InputError, get_task
from generation.quality import quality_line, quality_signals
from storage import Draft, DraftStatus, Repository
from support.discord_harness import DEFERRED, EPHEMERAL, finished, start_bot, stop_bot
from support.fake_discord import FakeDiscord

AD = {"product": "a solar lantern", "audience": "campers", "tone": "playful"}
SYSTEM = "You write short, vivid ads."
WRITING_S = 300  # three streams batched on 2 shared CPU cores: minutes when the machine is busy


def dpo_rows(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for split in ("train", "test")
            for line in (folder / f"dpo-{split}.jsonl").read_text().splitlines()]


def picked_pairs(folder: Path) -> list[tuple[str, str]]:
    return sorted((row["chosen"][0]["content"], row["rejected"][0]["content"]) for row in dpo_rows(folder)
                  if row["metadata"]["source"] == "variant pick")


async def messages_showing(repository: Repository, drafts: list[Draft]) -> set[str | None]:
    """Where the drafts are shown, once the bot has recorded it (just after its final edit)."""
    for _ in range(100):
        shown = {(await repository.get_draft(draft.id)).message_id for draft in drafts}  # type: ignore[union-attr]
        if None not in shown:
            break
        await asyncio.sleep(0.05)
    return shown


async def test_variants_arrive_in_one_message_and_the_pick_becomes_a_preference_pair(
    fake: FakeDiscord, bot: CopydeskBot, service: DraftService, repository: Repository, tmp_path: Path
) -> None:
    alice, mia = fake.guild.member("alice"), fake.guild.member("mia")
    interaction = await fake.invoke_command("draft", {**AD, "variants": 3}, subcommand="ad", user=alice)
    assert (await interaction.wait_for_response())["type"] == DEFERRED and interaction.response_delay < 3
    message = await interaction.wait_for_original(finished, timeout=WRITING_S)

    drafts = sorted(await repository.recent_drafts(), key=lambda draft: draft.id)
    first = drafts[0]
    assert [draft.status for draft in drafts] == [DraftStatus.DONE] * 3
    assert [(draft.parent_id, draft.variant_group) for draft in drafts] == [
        (None, first.id), (first.id, first.id), (first.id, first.id)], "siblings of one request"
    assert await messages_showing(repository, drafts) == {message["id"]}, "all three in one message"
    assert len(message["content"]) <= 2000
    for place, draft in enumerate(drafts, 1):
        assert f"**Variant {place}** · draft #{draft.id}" in message["content"]
        assert draft.output.strip() and draft.output.strip() in message["content"]
    assert [[component["custom_id"] for component in row["components"]] for row in message["components"]] == [
        [f"copydesk:pick:{d.id}", f"copydesk:rate:{d.id}:up", f"copydesk:rate:{d.id}:down",
         f"copydesk:improve:{d.id}", f"copydesk:flag:{d.id}"] for d in drafts], "a row of buttons under each variant"

    second, third = drafts[1], drafts[2]
    early = await fake.click_button(message, f"copydesk:pick:{second.id}", user=alice)
    answer = await early.wait_for_response()
    assert answer["data"]["flags"] == EPHEMERAL and "variant 2 of 3" in answer["data"]["content"]
    changed = await fake.click_button(message, f"copydesk:pick:{third.id}", user=alice)
    assert "variant 3 of 3" in (await changed.wait_for_response())["data"]["content"]
    await fake.redeliver(early)  # Discord repeating the first click must not undo the change of mind
    mine = await fake.click_button(message, f"copydesk:pick:{third.id}", user=mia)
    await mine.wait_for_response()
    database = tmp_path / "data" / "copydesk.sqlite3"
    assert sorted(rows(database, "SELECT member_id, draft_id FROM variant_picks")) == sorted(
        [(str(alice.user.id), third.id), (str(mia.user.id), third.id)])

    await repository.set_consent(str(alice.user.id), True)
    summary = await service.export(tmp_path / "export", formats=("dpo",))
    pairs = picked_pairs(tmp_path / "export")
    dropped = sum(summary.duplicates.values())  # near-identical pairs, if the model repeated itself
    assert len(pairs) + dropped == 2 and pairs
    assert all(chosen == third.output and rejected in (first.output, second.output) for chosen, rejected in pairs)


@pytest.mark.parametrize("variants", [0, 5])
async def test_a_number_of_variants_out_of_range_is_refused_politely(
    fake: FakeDiscord, bot: CopydeskBot, repository: Repository, variants: int
) -> None:
    asked = await fake.invoke_command("draft", {**AD, "variants": variants}, subcommand="ad")
    answer = await asked.wait_for_response()
    assert answer["type"] == 4 and answer["data"]["flags"] == EPHEMERAL
    assert answer["data"]["content"].startswith(f"⚠️ variants must be between 1 and 4 (got {variants})")
    assert await repository.recent_drafts() == []


# Without the model: the service as the CLI uses it, every member consenting.

@pytest.fixture
def exporter(repository: Repository) -> DraftService:
    return DraftService(repository, None, Policy(member_key=b"test member key",
                                                 privacy=PrivacySettings(training_consent_default=True),
                                                 export=ExportSettings(test_fraction=0.0)))


async def finished_variants(repository: Repository, outputs: list[str]) -> list[Draft]:
    drafts = await repository.create_variants(
        len(outputs), task="ad", inputs={"product": "rain boots", "audience": "commuters"}, system_prompt=SYSTEM,
        user_prompt="Write an ad for rain boots.", template_version="ad-v1", model="SmolLM2-135M-Instruct",
        quantization="nf4", sampling={"temperature": 0.8}, seed=0, author_id="alice", guild_id="42", channel_id="43",
        parent_id=None)
    for draft, output in zip(drafts, outputs, strict=True):
        await repository.finish_draft(draft.id, output=output, prompt_tokens=9, completion_tokens=9, latency_ms=1,
                                      ttft_ms=1)
    return drafts


OUTPUTS = ["Puddles fear these boots.", "Commute dry, arrive bright: boots for every storm.",
           "Rain check? Never again — waterproof from heel to toe."]


async def test_the_most_picked_variant_is_chosen_over_each_variant_picked_less(
    exporter: DraftService, repository: Repository, tmp_path: Path
) -> None:
    drafts = await finished_variants(repository, OUTPUTS)
    for member, picked in (("ann", 1), ("ben", 1), ("cat", 0), ("ann", 1)):
        await exporter.pick(Member(member, guild_id="42"), drafts[picked].id)

    await exporter.export(tmp_path / "export", formats=("dpo",))
    assert picked_pairs(tmp_path / "export") == sorted([(OUTPUTS[1], OUTPUTS[0]), (OUTPUTS[1], OUTPUTS[2])])

    nobody = await finished_variants(repository, ["Boots.", "More boots.", "Even more boots, in red."])
    await exporter.export(tmp_path / "again", formats=("dpo",))
    assert not {chosen for chosen, _ in picked_pairs(tmp_path / "again")} & {d.output for d in nobody}, \
        "variants nobody picked make no pair"


async def test_only_variants_can_be_picked_and_picks_go_with_their_member(
    exporter: DraftService, repository: Repository, tmp_path: Path
) -> None:
    alone = await repository.create_draft(
        task="ad", inputs={"product": "tea", "audience": "cooks"}, system_prompt=SYSTEM, user_prompt="Write an ad.",
        template_version="ad-v1", model="m", quantization="nf4", sampling={}, seed=0, author_id="alice")
    await repository.finish_draft(alone.id, output="Tea.", prompt_tokens=1, completion_tokens=1, latency_ms=1,
                                  ttft_ms=1)
    with pytest.raises(Exception, match="written alone"):
        await exporter.pick(Member("ann"), alone.id)
    with pytest.raises(InputError, match="variants must be between 1 and 4"):
        await exporter.create_variants(Member("ann"), "ad", {"product": "tea", "audience": "cooks"}, 5)

    drafts = await finished_variants(repository, OUTPUTS[:2])
    assert await exporter.pick(Member("ann", guild_id="42"), drafts[0].id) == (1, 2)
    await exporter.export(tmp_path / "before", formats=("dpo",))
    assert picked_pairs(tmp_path / "before") == [(OUTPUTS[0], OUTPUTS[1])]
    await exporter.privacy.erase(Member("ann"))
    await exporter.export(tmp_path / "export", formats=("dpo",))
    assert picked_pairs(tmp_path / "export") == [], "an erased member's picks are gone with them"


async def test_the_console_writes_variants_together_and_picks_one(service: DraftService, repository: Repository) -> None:
    out = io.StringIO()

    async def no_input(prompt: str) -> str | None:
        return None

    console = Console(service, Member("console:test"), out, no_input)
    await console.handle('/draft ad product:"a solar lantern" audience:campers variants:9')
    await console.handle('/draft ad product:"a solar lantern" audience:campers variants:two')
    assert await repository.recent_drafts() == []
    await console.handle('/draft ad product:"a solar lantern" audience:campers variants:2')
    first, second = sorted(await repository.recent_drafts(), key=lambda draft: draft.id)
    await console.handle(f"/pick #{second.id}")
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["error: variants must be between 1 and 4 (got 9); 1 writes a single draft, more write "
                         "that many side by side to pick from",
                         "error: variants is a whole number, such as variants:3, not 'two'"]
    assert f"── variant 1 · draft #{first.id} · done ──" in lines and f"── variant 2 · draft #{second.id} · done ──" in lines
    assert lines[-1] == "picked variant 2 of 2 — the others stay as alternatives"
    assert second.variant_group == first.id


def test_the_command_line_refuses_a_number_of_variants_out_of_range_before_loading_the_model(tmp_path: Path) -> None:
    with contextlib.chdir(tmp_path):
        result = CliRunner().invoke(main, ["draft", "ad", "--product", "tea", "--audience", "cooks", "--variants", "5"],
                                    env={"COPYDESK_DISCORD_TOKEN": None, "COPYDESK_CONFIG": None})
    assert result.exit_code == 1, result.output
    assert "Error: variants must be between 1 and 4 (got 5)" in result.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").glob("*.sqlite3")), "nothing stored"


def test_a_task_offers_variants_only_up_to_its_own_limit() -> None:
    single = replace(get_task("ad"), name="slogan", command="/draft slogan", max_variants=1)
    assert single.check_variants(1) == 1 and get_task("ad").check_variants(4) == 4
    with pytest.raises(InputError, match="writes one draft at a time"):
        single.check_variants(2)
    with pytest.raises(ValueError, match="max_variants is 1 to 4"):
        replace(single, max_variants=5)


# Blocked so that both variants are held. A sampled ad can miss every function word ("Solar lantern:
# bright, light, waterproof."), so the product's own words are blocked too.
EVERYDAY_WORDS = ("the", "a", "an", "and", "to", "of", "for", "your", "is", "with", "in", "you", "our", "it", "this",
                  "on", "are", "be", "at", "as", "or", "from", "by", "will", "can", "we", "i",
                  "solar", "lantern", "lanterns", "light", "camp", "camping", "campers", "night")


async def test_held_variants_stay_hidden_and_a_moderators_release_redraws_only_that_one(
    fake: FakeDiscord, repository: Repository, engine: Any, policy: Policy
) -> None:
    review = ModerationSettings(review_channel_id=fake.guild.channel("moderation").id)
    strict = DraftService(repository, engine, Policy(engine=policy.engine, member_key=policy.member_key,
                                                     moderation=ModerationSettings(blocked_terms=EVERYDAY_WORDS)))
    bot, task = await start_bot(fake, strict, review)
    try:
        interaction = await fake.invoke_command("draft", {**AD, "variants": 2}, subcommand="ad")
        await interaction.wait_for_response()
        final = await interaction.wait_for_original(
            lambda m: m["content"].count(HELD) == 2 and not m["components"], timeout=WRITING_S)
        posts = await fake.wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
            [m for m in fake.channel_messages(fake.guild.channel("moderation")) if m.get("components")]), timeout=60)
        first, second = sorted(await repository.recent_drafts(), key=lambda draft: draft.id)
        assert first.output.strip() and " ".join(first.output.split()[:3]) not in final["content"]

        flag_id = (await repository.get_draft(first.id)).flags[0].id  # type: ignore[union-attr]
        post = next(post for post in posts if f"copydesk:mod:dismiss:{flag_id}" in str(post["components"]))
        released = await fake.click_button(post, f"copydesk:mod:dismiss:{flag_id}", user=fake.guild.member("mia"))
        await released.wait_for_response()
        shown = await fake.wait_for(lambda: interaction.original if interaction.original["components"] else None)
        assert " ".join(first.output.split()[:5]) in " ".join(shown["content"].split())
        assert shown["content"].count(HELD) == 1, "the other variant stays held"
        assert [[c["custom_id"] for c in row["components"]][0] for row in shown["components"]] == [
            f"copydesk:pick:{first.id}"]
        assert second.variant_group == first.id
    finally:
        await stop_bot(bot, task)


async def test_variants_keep_the_requests_language_and_show_their_version_and_quality(
    service: DraftService, repository: Repository
) -> None:
    drafts = await service.create_variants(Member("alice"), "ad", AD, 2, language="fr")
    assert [draft.language for draft in drafts] == ["fr", "fr"], "every variant is written in the language asked for"
    assert all(draft.user_prompt.endswith("Write it in French.") for draft in drafts)
    signals = quality_signals("Une lanterne pour la nuit.", "fr", 50, ())
    for draft in drafts:
        await repository.finish_draft(draft.id, output="Une lanterne pour la nuit.", prompt_tokens=1,
                                      completion_tokens=6, latency_ms=1, ttft_ms=1, quality=signals)

    content, _, _ = final_content(await service.variants_of(drafts[0]), ())
    assert f"· version {drafts[0].model_version} ·" in content.splitlines()[0]
    assert content.count(f"-# {quality_line(signals)}") == 2, "each variant ends with its quality signals"
