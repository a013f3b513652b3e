"""The use cases end to end: the real model in 4-bit, a real SQLite file, the real export loaded by `datasets`."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from datasets import load_dataset

from bot.config import EngineSettings, LimitSettings
from bot.service import DraftProgress, DraftService, LimitReached, Member, Policy, ServiceError
from conftest import TEST_MAX_NEW_TOKENS
from generation import InputError
from storage import DraftNotFound, DraftStatus, Repository

ALICE = Member("console:alice", guild_id="1", channel_id="2")
BOB = Member("console:bob")
AD = {"product": "a solar lantern", "audience": "campers", "tone": "playful"}


async def run(service: DraftService, draft_id: int) -> list[DraftProgress]:
    return [progress async for progress in service.generate(draft_id)]


async def draft(service: DraftService, inputs: dict[str, str] = AD, task: str = "ad") -> int:
    created = await service.create_draft(ALICE, task, inputs)
    steps = await run(service, created.id)
    assert steps[-1].status == DraftStatus.DONE
    return created.id


async def test_a_draft_streams_and_lands_with_its_provenance(service: DraftService, repository: Repository) -> None:
    created = await service.create_draft(ALICE, "ad", AD)
    assert created.status == DraftStatus.QUEUED, "the row exists before generation starts"
    steps = await run(service, created.id)
    assert len(steps) > 2
    assert steps[-1].status == DraftStatus.DONE
    stored = await repository.get_draft(created.id)
    assert stored is not None
    assert stored.output == steps[-1].text and stored.output.strip()
    assert stored.inputs == AD
    assert "a solar lantern" in stored.user_prompt and "campers" in stored.user_prompt
    assert stored.system_prompt and stored.template_version == "ad-v1"
    assert (stored.model, stored.quantization, stored.seed) == ("SmolLM2-135M-Instruct", "int4", 0)
    assert stored.sampling["max_new_tokens"] == TEST_MAX_NEW_TOKENS and stored.sampling["temperature"] == 0.8
    assert stored.prompt_tokens > 10 and 0 < stored.completion_tokens <= TEST_MAX_NEW_TOKENS
    assert 0 <= stored.ttft_ms <= stored.latency_ms
    assert stored.author_id == ALICE.id and stored.guild_id == "1" and stored.channel_id == "2"
    assert stored.started_at and stored.finished_at


async def test_optional_fields_get_their_defaults(service: DraftService) -> None:
    created = await service.create_draft(ALICE, "blog", {"topic": "composting"})
    assert created.inputs == {"topic": "composting", "audience": "a general audience",
                              "tone": "friendly", "length": "short"}
    await run(service, created.id)


async def test_a_cancelled_draft_is_marked_cancelled(service: DraftService, repository: Repository) -> None:
    created = await service.create_draft(ALICE, "summary", {"text": "Rivers carry water to the sea. " * 20})
    steps = []
    async for progress in service.generate(created.id):
        steps.append(progress)
        if len(steps) == 2:
            assert service.cancel(created.id)
    assert steps[-1].status == DraftStatus.CANCELLED
    stored = await repository.get_draft(created.id)
    assert stored.status == DraftStatus.CANCELLED and stored.finished_at is not None


async def test_a_draft_abandoned_by_its_front_end_is_marked_cancelled(
    service: DraftService, repository: Repository
) -> None:
    created = await service.create_draft(ALICE, "ad", AD)
    stream = service.generate(created.id)
    await anext(stream)
    await stream.aclose()
    assert (await repository.get_draft(created.id)).status == DraftStatus.CANCELLED


async def test_regenerations_point_at_the_original_request(service: DraftService, repository: Repository) -> None:
    original = await draft(service)
    again = await service.regenerate(BOB, original)
    await run(service, again.id)
    third = await service.regenerate(BOB, again.id)
    assert again.parent_id == original and third.parent_id == original
    assert again.inputs == AD and again.author_id == BOB.id


async def test_ratings_are_one_per_member_and_can_change(service: DraftService, repository: Repository) -> None:
    draft_id = await draft(service)
    assert await service.rate(ALICE, draft_id, up=True) == (1, 0)
    assert await service.rate(ALICE, draft_id, up=True) == (1, 0)
    assert await service.rate(ALICE, draft_id, up=False) == (0, 1)
    clicks = [service.rate(Member(f"m{i % 5}"), draft_id, up=i % 2 == 0) for i in range(20)]
    await asyncio.gather(*clicks)
    stored = await repository.get_draft(draft_id)
    assert sorted(rating.member_id for rating in stored.ratings) == sorted([ALICE.id] + [f"m{i}" for i in range(5)])


async def test_improvements_and_flags_are_stored(service: DraftService, repository: Repository) -> None:
    draft_id = await draft(service)
    await service.improve(BOB, draft_id, "  Light up the night — our lantern charges by day.  ")
    await service.flag(BOB, draft_id, "makes a claim we cannot back")
    stored = await repository.get_draft(draft_id)
    assert [i.text for i in stored.improvements] == ["Light up the night — our lantern charges by day."]
    assert [(f.reason, f.member_id, f.source) for f in stored.flags] == [
        ("makes a claim we cannot back", BOB.id, "member")
    ]


@pytest.mark.parametrize(
    ("task", "inputs", "message"),
    [
        ("poem", {"topic": "x"}, "unknown task 'poem'; choose one of: ad, blog, summary"),
        ("ad", {"product": "x", "audience": "y", "price": "9"}, "unknown field 'price'"),
        ("ad", {"product": "   ", "audience": "y"}, "product is required"),
        ("ad", {"audience": "y"}, "product is required"),
        ("ad", {"product": "x" * 201, "audience": "y"}, "product is 201 characters long; /draft ad takes at most 200"),
        ("ad", {"product": "x", "audience": "y", "tone": "sarcastic"}, "tone must be one of"),
        ("summary", {"text": "y" * 6001}, "at most 6000"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_stored(
    service: DraftService, repository: Repository, task: str, inputs: dict[str, str], message: str
) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        await service.create_draft(ALICE, task, inputs)
    assert await repository.recent_drafts() == []


async def test_feedback_on_drafts_that_cannot_take_it_is_refused(service: DraftService) -> None:
    with pytest.raises(DraftNotFound, match="draft 404 does not exist"):
        await service.rate(ALICE, 404, up=True)
    queued = await service.create_draft(ALICE, "ad", AD)
    with pytest.raises(ServiceError, match="only finished drafts"):
        await service.rate(ALICE, queued.id, up=True)
    with pytest.raises(InputError, match="the reason is empty"):
        await service.flag(ALICE, queued.id, "   ")
    with pytest.raises(InputError, match="at most 4000"):
        await service.flag(ALICE, queued.id, "x" * 4001)
    await run(service, queued.id)
    with pytest.raises(ServiceError, match="is done, not queued"):
        await run(service, queued.id)


async def test_exports_load_with_datasets_and_have_the_documented_fields(
    service: DraftService, tmp_path: Path
) -> None:
    liked = await draft(service)
    await service.rate(ALICE, liked, up=True)
    await service.rate(BOB, liked, up=True)
    regenerated = await service.regenerate(ALICE, liked)
    await run(service, regenerated.id)
    await service.rate(ALICE, regenerated.id, up=False)
    improved = await draft(service, {"topic": "night hikes"}, task="blog")
    await service.improve(BOB, improved, "Night hikes: what to pack, and why the stars are worth it.")
    flagged = await draft(service)
    await service.rate(ALICE, flagged, up=True)
    await service.flag(BOB, flagged, "off-brand")
    unrated = await draft(service, {"text": "Short text to summarize."}, task="summary")
    for member in (ALICE, BOB):
        await service.privacy.set_training_use(member, True)

    rows = {}
    summary = await service.export(tmp_path, test_fraction=0.0)
    for export_format in ("sft", "dpo", "kto", "raw"):
        path = tmp_path / f"{export_format}-train.jsonl"
        dataset = load_dataset("json", data_files=str(path), split="train")
        assert len(dataset) == summary.count(export_format)
        rows[export_format] = [json.loads(line) for line in path.read_text().splitlines()]

    sft = rows["sft"]
    assert [(row["metadata"]["draft_id"], row["metadata"]["source"]) for row in sft] == [
        (liked, "rated"), (improved, "improvement")
    ]
    assert [m["role"] for m in sft[0]["messages"]] == ["system", "user", "assistant"]
    assert sft[1]["messages"][2]["content"].startswith("Night hikes")

    dpo = {row["metadata"]["source"]: row for row in rows["dpo"]}
    assert set(dpo) == {"improvement", "regeneration"}
    assert dpo["regeneration"]["metadata"]["draft_id"] == liked
    assert dpo["regeneration"]["rejected"][0]["content"] == (await service.get(regenerated.id)).output
    assert dpo["improvement"]["rejected"][0]["content"] == (await service.get(improved)).output
    assert all(row["prompt"][1]["role"] == "user" for row in rows["dpo"])

    assert sorted((row["metadata"]["draft_id"], row["label"]) for row in rows["kto"]) == [
        (liked, True), (regenerated.id, False)
    ]
    assert {row["id"] for row in rows["raw"]} == {liked, regenerated.id, improved, unrated}

    metadata = sft[0]["metadata"]
    assert {"draft_id", "task", "template_version", "model", "quantization", "sampling", "seed",
            "created"} <= set(metadata)
    everything = "".join(path.read_text() for path in tmp_path.glob("*.jsonl"))
    assert ALICE.id not in everything and BOB.id not in everything, "exports never carry member ids"
    assert metadata["author"].startswith("m_"), "authors appear as keyed pseudonyms"


async def test_an_export_of_an_empty_database_writes_empty_files_and_a_card(service: DraftService, tmp_path: Path) -> None:
    summary = await service.export(tmp_path / "out", formats=("sft",))
    assert summary.count("sft") == 0 and (tmp_path / "out" / "sft-train.jsonl").read_text() == ""
    assert "No drafts matched." in (tmp_path / "out" / "README.md").read_text()
    with pytest.raises(ValueError, match="unknown export format"):
        await service.export(tmp_path / "x", formats=("csv",))


async def test_limits_refuse_at_once_say_why_and_store_nothing(
    repository: Repository, engine: Any, policy: Policy
) -> None:
    strict = DraftService(repository, engine, replace(policy, limits=LimitSettings(waiting_per_member=2,
                                                                                   per_member_per_minute=3, waiting=0)))
    first = await strict.create_draft(ALICE, "ad", AD)
    second = await strict.create_draft(ALICE, "ad", AD)
    with pytest.raises(LimitReached, match="you already have 2 drafts waiting; ask again when one of them is done"):
        await strict.create_draft(ALICE, "ad", AD)
    await strict.create_draft(BOB, "ad", AD)  # one member's limit is not another's
    for done in (first, second):  # no longer waiting; written out, they might leave the minute on a slow machine
        await repository.cancel_draft(done.id, "")
    await strict.create_draft(ALICE, "ad", AD)
    with pytest.raises(LimitReached, match=r"you asked for 3 drafts in the last minute; please try again in \d+ s"):
        await strict.create_draft(ALICE, "ad", AD)
    assert len(await repository.recent_drafts(limit=50)) == 4
    assert strict.metrics.registry.get_sample_value("copydesk_refusals_total") == 2

    busy = DraftService(repository, engine, replace(policy, limits=LimitSettings(waiting=3)))
    await busy.create_draft(Member("console:carol"), "ad", AD)
    with pytest.raises(LimitReached, match=r"copydesk is at capacity \(3 drafts waiting\)"):
        await busy.create_draft(Member("console:dave"), "ad", AD)
    assert len(await repository.recent_drafts(limit=50)) == 5


async def test_a_draft_past_its_deadline_is_stopped_and_marked(
    repository: Repository, engine: Any, policy: Policy
) -> None:
    hurried = DraftService(repository, engine, replace(policy, engine=EngineSettings(max_new_tokens=300, timeout_s=1.0)))
    created = await hurried.create_draft(ALICE, "blog", {"topic": "a long walk along the coast"})
    steps = await run(hurried, created.id)
    assert steps[-1].status == DraftStatus.FAILED and steps[-1].error == "stopped at its deadline of 1 s"
    stored = await repository.get_draft(created.id)
    assert stored.status == DraftStatus.FAILED and stored.error == "stopped at its deadline of 1 s"
    assert stored.finished_at is not None
