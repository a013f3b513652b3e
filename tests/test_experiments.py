"""Experiments: drafts go to variants by their shares, members stay on theirs, regenerate goes to another,
the team's feedback is counted per variant and head to head, promote and rollback switch what a task serves."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from bot.config import LimitSettings
from bot.errors import ServiceError
from bot.experiments import ExperimentReport, VariantSpec, draw, member_point
from bot.service import DraftService, Member, Policy
from generation.templates import BrandVoice
from storage import BASE_VERSION, Assignment, ExperimentVariant, Repository, open_database
from test_cli import copydesk

AD = {"product": "rain boots", "audience": "commuters"}


@pytest.fixture
def policy(policy: Policy) -> Policy:
    """Hundreds of drafts are stored here and never generated: no limit on waiting or asking."""
    return dataclasses.replace(policy, limits=LimitSettings(waiting_per_member=0, per_member_per_minute=0, waiting=0))


def arms(*shares: float) -> list[ExperimentVariant]:
    return [ExperimentVariant(label=label, model_version=label, template_version="ad-v1", share=share)
            for label, share in zip("ABCD", shares, strict=False)]


@pytest.mark.parametrize("shares", [(1, 1), (3, 1), (1, 2, 1), (0.1, 0.9)])
def test_drafts_follow_the_shares(shares: tuple[float, ...]) -> None:
    """20,000 seeded draws: each variant's part is within 1.5 points of its share (the binomial's standard
    deviation is at most 0.35 points here, so this is over four of them)."""
    rng = random.Random(7)
    counts = Counter(draw(arms(*shares), rng.random()).label for _ in range(20_000))
    for label, share in zip("ABCD", shares, strict=False):
        assert counts[label] / 20_000 == pytest.approx(share / sum(shares), abs=0.015)


def test_a_member_stays_on_one_variant_and_members_spread_by_the_shares() -> None:
    variants = arms(1, 3)
    assert {draw(variants, member_point(5, "alice")).label for _ in range(50)} == {draw(variants, member_point(5, "alice")).label}
    spread = Counter(draw(variants, member_point(5, f"member-{n}")).label for n in range(4000))
    assert spread["B"] / 4000 == pytest.approx(0.75, abs=0.03)
    # another experiment places members anew, so nobody is on "the first variant" forever
    moved = sum(draw(variants, member_point(5, f"member-{n}")).label != draw(variants, member_point(6, f"member-{n}")).label
                for n in range(4000))
    assert 0.3 < moved / 4000 < 0.45  # two independent draws differ 2·0.25·0.75 = 37.5 % of the time


@pytest.mark.parametrize(("text", "expected"), [
    ("model=v2", VariantSpec("v2", None, 1.0)),
    ("model=base, template=ad-v1, share=2.5", VariantSpec("base", "ad-v1", 2.5)),
    ("template=ad-v3", VariantSpec(None, "ad-v3", 1.0)),
])
def test_a_variant_reads_as_written(text: str, expected: VariantSpec) -> None:
    assert VariantSpec.parse(text) == expected


@pytest.mark.parametrize("text", ["", "v2", "model=", "share=0", "share=-1", "share=nan", "model=a,model=b", "colour=red"])
def test_a_variant_written_wrongly_is_refused_with_how_to_write_it(text: str) -> None:
    with pytest.raises(ServiceError, match="model=NAME|share"):
        VariantSpec.parse(text)


async def register(repository: Repository, name: str) -> None:
    await repository.register_version(
        name=name, base_model="SmolLM2-135M-Instruct", base_sha256="0" * 64, folder=f"/nowhere/{name}",
        adapter_sha256="1" * 64, method="sft", hyperparameters={}, seed=0, source_export={}, libraries={},
        wall_time_s=1.0, evaluation={})


async def finish(repository: Repository, draft_id: int) -> None:
    await repository.finish_draft(draft_id, output=f"draft {draft_id}", prompt_tokens=9, completion_tokens=9,
                                  latency_ms=1, ttft_ms=1)


async def test_an_experiment_routes_new_drafts_and_regenerate_goes_to_the_other_variant(
        service: DraftService, repository: Repository) -> None:
    await register(repository, "v2")
    experiment = await service.experiments.start("ad", [VariantSpec(BASE_VERSION), VariantSpec("v2", share=3)],
                                                 by="mod")
    drafts = [await service.create_draft(Member(f"m{n}"), "ad", AD) for n in range(200)]
    by_variant = Counter(draft.variant for draft in drafts)
    assert by_variant["B"] / 200 == pytest.approx(0.75, abs=0.1)  # drawn per draft: 200 draws, sd 3 points
    assert {(draft.variant, draft.model_version) for draft in drafts} == {("A", BASE_VERSION), ("B", "v2")}
    assert {draft.experiment_id for draft in drafts} == {experiment.id}
    for original in drafts[:20]:
        await finish(repository, original.id)
        sibling = await service.regenerate(Member(original.author_id), original.id)
        assert (sibling.parent_id, sibling.experiment_id) == (original.id, experiment.id)
        assert sibling.variant != original.variant
    # variants of one request go to both arms in turn, so a pick among them is head-to-head
    together = await service.create_variants(Member("m0"), "ad", AD, 4)
    assert Counter(draft.variant for draft in together) == {"A": 2, "B": 2}


async def test_a_template_version_against_the_built_in_prompt(service: DraftService) -> None:
    saved = await service.templates.save("ad", "You write copy for Puddle & Co.", "A {tone} ad for {product}, for "
                                         "{audience}.", BrandVoice(tone=("warm",), avoid=("cheap",)), by="mod")
    assert saved.name == "ad-v2"
    await service.experiments.start("ad", [VariantSpec(), VariantSpec(template_version="ad-v2")], by="mod")
    drafts = [await service.create_draft(Member(f"m{n}"), "ad", AD) for n in range(40)]
    rendered = {(draft.variant, draft.template_version, draft.model_version, draft.user_prompt.split("\n")[0])
                for draft in drafts}
    assert rendered == {("A", "ad-v1", BASE_VERSION, "Write a friendly advertisement for rain boots, aimed at commuters."),
                        ("B", "ad-v2", BASE_VERSION, "A friendly ad for rain boots, for commuters.")}
    assert all(("Never use these words: cheap" in draft.system_prompt) == (draft.variant == "B") for draft in drafts)
    await service.experiments.promote("ad", "B", by="mod")
    assert (await service.create_draft(Member("m"), "ad", AD)).template_version == "ad-v2"


async def test_one_experiment_per_task_and_bad_variants_are_refused(service: DraftService,
                                                                    repository: Repository) -> None:
    with pytest.raises(ServiceError, match="no model version named 'v9'"):
        await service.experiments.start("ad", [VariantSpec(BASE_VERSION), VariantSpec("v9")], by="mod")
    with pytest.raises(ServiceError, match="no template version named 'ad-v7'"):
        await service.experiments.start("ad", [VariantSpec(BASE_VERSION), VariantSpec(template_version="ad-v7")],
                                        by="mod")
    with pytest.raises(ServiceError, match="'blog-v1' belongs to the blog task, not to ad"):
        await service.experiments.start("ad", [VariantSpec(), VariantSpec(template_version="blog-v1")], by="mod")
    with pytest.raises(ServiceError, match="2 to 4 variants"):
        await service.experiments.start("ad", [VariantSpec(BASE_VERSION)], by="mod")
    with pytest.raises(ServiceError, match="the same model version with the same template"):
        await service.experiments.start("ad", [VariantSpec(BASE_VERSION), VariantSpec()], by="mod")
    await register(repository, "v2")
    await service.experiments.start("ad", [VariantSpec(BASE_VERSION), VariantSpec("v2")], by="mod")
    with pytest.raises(ServiceError, match="already runs on 'ad'"):
        await service.experiments.start("ad", [VariantSpec(BASE_VERSION), VariantSpec("v2")], by="mod2")
    await service.experiments.start("blog", [VariantSpec(BASE_VERSION), VariantSpec("v2")], by="mod")  # another task


async def test_sticky_assignment_keeps_each_member_on_one_variant(service: DraftService,
                                                                  repository: Repository) -> None:
    await register(repository, "v2")
    await service.experiments.start("ad", [VariantSpec(BASE_VERSION), VariantSpec("v2")], by="mod",
                                    assignment=Assignment.MEMBER)
    seen: dict[str, set[str | None]] = {}
    for _ in range(5):
        for n in range(12):
            draft = await service.create_draft(Member(f"m{n}"), "ad", AD)
            seen.setdefault(draft.author_id, set()).add(draft.variant)
    assert all(len(variants) == 1 for variants in seen.values())
    assert {variant for variants in seen.values() for variant in variants} == {"A", "B"}


async def test_the_team_is_counted_per_variant_and_head_to_head(service: DraftService, repository: Repository) -> None:
    await register(repository, "v2")
    await service.experiments.start("ad", [VariantSpec(BASE_VERSION), VariantSpec("v2")], by="mod")
    for n in range(30):
        member = Member(f"m{n}")
        original = await service.create_draft(member, "ad", AD)
        await finish(repository, original.id)
        sibling = await service.regenerate(member, original.id)
        await finish(repository, sibling.id)
        better, worse = (original, sibling) if original.variant == "B" else (sibling, original)
        await service.rate(member, better.id, up=True)
        await service.rate(member, worse.id, up=n % 5 == 0)  # a fifth like both: no head-to-head choice
    report = await service.experiments.report("ad")
    assert [tally.version for tally in report.tallies] == ["A", "B"]
    assert [(tally.drafts, tally.up, tally.down) for tally in report.tallies] == [(30, 6, 24), (30, 30, 0)]
    assert report.head_to_head == {"A": (0, 24), "B": (24, 0)}
    assert report.verdict == "not enough yet: 30 of 100 counted votes for A (and 1 more short)"
    table = report.table(service.decision_rule)
    assert "| variant |" in table[4] and table[-1].startswith("verdict: not enough yet")
    assert "| B | 30 | 30 |" in "\n".join(table) and "24–0 |" in "\n".join(table)


async def test_promote_switches_what_new_drafts_use_and_rollback_switches_back(
        service: DraftService, repository: Repository) -> None:
    await register(repository, "v2")
    experiment = await service.experiments.start("ad", [VariantSpec(BASE_VERSION), VariantSpec("v2")], by="mod")
    with pytest.raises(ServiceError, match="names no winner yet"):
        await service.experiments.promote("ad", by="mod")
    promoted = await service.experiments.promote("ad", "b", by="mod")
    assert (promoted.label, promoted.model_version) == ("B", "v2")
    after = [await service.create_draft(Member("m"), "ad", AD) for _ in range(5)]
    assert {(draft.model_version, draft.experiment_id, draft.variant) for draft in after} == {("v2", None, None)}
    assert (await service.create_draft(Member("m"), "blog", {"topic": "tea"})).model_version == BASE_VERSION
    assert (await repository.experiment(experiment.id)).winner == "B"
    await service.experiments.rollback("ad", by="mod")
    assert (await service.create_draft(Member("m"), "ad", AD)).model_version == BASE_VERSION
    await service.experiments.rollback("ad", by="mod")  # a rollback is undone the same way
    assert (await service.create_draft(Member("m"), "ad", AD)).model_version == "v2"
    actions = [(action.action, action.moderator_id) for action in reversed(await repository.recent_actions())]
    assert actions == [("start-experiment", "mod"), ("promote-experiment", "mod"), ("rollback-task", "mod"),
                       ("rollback-task", "mod")]
    with pytest.raises(ServiceError, match="no experiment runs on 'ad'"):
        await service.experiments.stop("ad", by="mod")


async def test_a_promotion_without_a_name_takes_the_rules_winner(service: DraftService, repository: Repository) -> None:
    await register(repository, "v2")
    await service.experiments.start("summary", [VariantSpec(BASE_VERSION), VariantSpec("v2")], by="mod")
    for n in range(240):
        draft = await service.create_draft(Member(f"m{n % 40}"), "summary", {"text": "Tea is a drink."})
        await finish(repository, draft.id)
        await service.rate(Member(f"m{n % 40}"), draft.id, up=draft.variant == "B" or n % 3 == 0)
    report: ExperimentReport = await service.experiments.report("summary")
    assert report.winner == "B" and report.verdict.startswith("B ahead: ")
    assert (await service.experiments.promote("summary", by="mod")).label == "B"


async def test_exports_carry_the_experiment_and_head_to_head_choices_become_pairs(
        service: DraftService, repository: Repository, tmp_path: Path) -> None:
    await register(repository, "v2")
    experiment = await service.experiments.start("ad", [VariantSpec(BASE_VERSION), VariantSpec("v2")], by="mod")
    member = Member("alice")
    await service.privacy.set_training_use(member, True)
    original = await service.create_draft(member, "ad", AD)
    await finish(repository, original.id)
    sibling = await service.regenerate(member, original.id)
    await finish(repository, sibling.id)
    await service.rate(member, original.id, up=False)
    await service.rate(member, sibling.id, up=True)
    await service.export(tmp_path / "out", formats=("dpo", "raw"), test_fraction=0.0)
    [pair] = [json.loads(line) for line in (tmp_path / "out" / "dpo-train.jsonl").read_text().splitlines()]
    assert pair["metadata"]["source"] == "head-to-head"
    assert (pair["metadata"]["experiment"], pair["metadata"]["variant"]) == (experiment.id, sibling.variant)
    assert pair["chosen"][0]["content"] == f"draft {sibling.id}"
    raw = [json.loads(line) for line in (tmp_path / "out" / "raw-train.jsonl").read_text().splitlines()]
    assert sorted((row["experiment_id"], row["variant"]) for row in raw) == sorted(
        [(experiment.id, original.variant), (experiment.id, sibling.variant)])


async def test_the_cli_runs_an_experiment_from_start_to_rollback(tmp_path: Path, cache_dir: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return copydesk(*args, cwd=tmp_path, cache_dir=cache_dir)

    database = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'copydesk.sqlite3'}")
    await register(Repository(database), "v2")
    await database.close()
    same = run("experiment", "start", "ad", "--variant", "model=base", "--variant", "template=ad-v1,share=2")
    assert same.returncode == 1 and "same model version with the same template" in same.stderr
    bad = run("experiment", "start", "ad", "--variant", "model=base", "--variant", "modle=v2")
    assert bad.returncode == 1 and "cannot read the variant 'modle=v2'" in bad.stderr
    assert run("experiment", "list").stdout.strip() == "no experiments yet"
    assert "no experiment has run on 'ad'" in run("experiment", "status", "ad").stderr
    assert "nothing to roll back" in run("experiment", "rollback", "ad").stderr
    unservable = run("experiment", "start", "ad", "--variant", "model=base", "--variant", "model=v2,share=3")
    assert unservable.returncode == 1 and "model version 'v2' cannot be served" in unservable.stderr
    database = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'copydesk.sqlite3'}")
    await Repository(database).create_template_version(
        task="ad", name_for=lambda stored: f"ad-v{stored + 2}", system_prompt="You write ads.",
        template="An ad for {product}, for {audience}, {tone}.", brand_voice={}, created_by="ops")
    await database.close()
    started = run("experiment", "start", "ad", "--variant", "template=ad-v1", "--variant", "template=ad-v2,share=3",
                  "--assignment", "member", "--user", "ops")
    assert started.returncode == 0, started.stderr
    assert started.stdout.splitlines()[1:] == ["A = model base, template ad-v1, share 1",
                                               "B = model base, template ad-v2, share 3"]
    assert "assignment per member" in started.stdout.splitlines()[0]
    status = run("experiment", "status", "ad")
    assert "| variant |" in status.stdout and "verdict: not enough yet: 0 of 100 counted votes for A" in status.stdout
    assert run("stats", "--experiment", "1").stdout == status.stdout
    assert "names no winner yet" in run("experiment", "promote", "ad").stderr
    promoted = run("experiment", "promote", "ad", "B", "--user", "ops")
    assert promoted.stdout.startswith("ad now serves model base with template ad-v2 (variant B)"), promoted.stderr
    assert run("experiment", "rollback", "ad").stdout.strip() == "ad now serves model base with template ad-v1"
    assert run("experiment", "list").stdout.startswith("#1\tad\tpromoted\t")
