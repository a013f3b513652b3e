"""Template versions: checked before they are stored (placeholders, room in the context), rendered with the
brand voice, stored under the task's next name in a real SQLite file, previewed on the real embedded model,
and written from the command line."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bot.errors import ServiceError
from bot.service import DraftService
from bot.templates import Templates
from conftest import rows
from generation import TASKS, InputError, LocalEngine, Prompt
from generation.templates import BrandVoice, PromptTemplate, apply, builtin, check, estimate_tokens
from storage import Repository, open_database
from test_cli import copydesk

VOICE = BrandVoice(tone=("warm", "direct"), use=("handmade",), avoid=("cheap", "deal"),
                   sample="Made slowly, by hand, to last.")
AD_SYSTEM = "You write ads for a small workshop. One headline, two sentences."
AD_TEMPLATE = "An ad for {product}, for {audience}, in a {tone} voice."


def ad_version(template: str = AD_TEMPLATE, voice: BrandVoice = VOICE, system: str = AD_SYSTEM) -> PromptTemplate:
    return PromptTemplate("ad-v2", "ad", system, template, voice)


def check_estimated(template: PromptTemplate, context_tokens: int = 2048) -> None:
    check(TASKS[template.task], template, context_tokens=context_tokens, count_tokens=estimate_tokens)


@pytest.mark.parametrize(("template", "reason"), [
    ("An ad for {product} for {audience} by {brand}.", "unknown placeholder {brand} for ad"),
    ("An ad for {product} for {audience} {}.", "positional placeholder {}"),
    ("An ad for {0} for {product} {audience}.", "positional placeholder {0}"),
    ("An ad for {product.upper} for {audience}.", "placeholder {product.upper} reaches into a field"),
    ("An ad for {product[0]} for {audience}.", "placeholder {product[0]} reaches into a field"),
    ("An ad for {product for {audience}.", "braces do not match"),
    ("An ad for product} for {audience}.", "braces do not match"),
    ("An ad for {product!r} for {audience}.", "{product} carries a format"),
    ("An ad for {product:>30} for {audience}.", "{product} carries a format"),
    ("An ad for {product}.", "leaves out {audience}"),
    ("   ", "the template is empty"),
])
def test_a_template_that_a_draft_could_fail_on_is_refused_with_its_reason(template: str, reason: str) -> None:
    with pytest.raises(InputError, match=re.escape(reason)):
        check_estimated(ad_version(template))


def test_doubled_braces_are_text_and_optional_fields_may_be_left_out() -> None:
    check_estimated(ad_version("An ad {{in braces}} for {product}, for {audience}."))


def test_an_empty_system_prompt_is_refused() -> None:
    with pytest.raises(InputError, match="system prompt is empty"):
        check_estimated(ad_version(system=" \n "))


def test_a_version_that_leaves_no_room_in_the_context_is_refused_with_the_numbers(engine: LocalEngine) -> None:
    summary = TASKS["summary"]
    check(summary, builtin(summary), context_tokens=2048, count_tokens=engine.count_tokens)
    long_voice = BrandVoice(sample="Our house style is calm and exact. " * 120)
    bloated = PromptTemplate("summary-v2", "summary", summary.system_prompt, summary.template, long_voice)
    with pytest.raises(InputError) as refused:
        check(summary, bloated, context_tokens=2048, count_tokens=engine.count_tokens)
    numbers = re.search(r"the prompt is (\d+) tokens, and with the (\d+) tokens a summary may write that is (\d+), "
                        r"over the context of 2048", str(refused.value))
    assert numbers is not None, refused.value
    prompt, budget, total = map(int, numbers.groups())
    assert budget == summary.sampling.max_new_tokens and total == prompt + budget > 2048
    # Every field at its limit: the 6000 characters of text alone are over a thousand tokens.
    voice_tokens = engine.count_tokens(Prompt(long_voice.instructions(), ""))
    assert prompt > 1000 + voice_tokens


def test_each_platform_layout_is_counted_with_its_own_token_budget(engine: LocalEngine) -> None:
    ad = TASKS["ad"]
    # google asks for 200 new tokens, generic for 120: a context between the two refuses it for google.
    with pytest.raises(InputError, match="no room in the model's context for google"):
        check(ad, ad_version(), context_tokens=420, count_tokens=engine.count_tokens)


def test_the_estimate_without_a_tokenizer_errs_high(engine: LocalEngine) -> None:
    prompt = TASKS["summary"].render({"text": "The council met on Tuesday about the new bike lanes. " * 100})
    assert estimate_tokens(prompt) > engine.count_tokens(prompt)


def test_apply_writes_the_brand_voice_into_the_system_prompt_and_keeps_platform_layouts() -> None:
    ad = TASKS["ad"]
    task = apply(ad, ad_version())
    prompt = task.render({"product": "oak stools", "audience": "new homeowners"})
    assert prompt.user == "An ad for oak stools, for new homeowners, in a friendly voice."
    assert prompt.system.startswith(AD_SYSTEM)
    for line in ("- Tone: warm, direct.", "- Use these words where they fit: handmade.",
                 "- Never use these words: cheap, deal.", "Made slowly, by hand, to last."):
        assert line in prompt.system
    assert task.template_version_for({"product": "oak stools"}) == "ad-v2"
    google = task.render({"product": "oak stools", "audience": "new homeowners", "platform": "google"})
    built_in_google = ad.render({"product": "oak stools", "audience": "new homeowners", "platform": "google"})
    assert google.system.startswith(built_in_google.system) and "Never use these words: cheap, deal." in google.system
    assert task.template_version_for({"platform": "google"}) == "ad-v2+google-v1"
    assert apply(ad, builtin(ad)).render({"product": "tea", "audience": "students"}) == \
        ad.render({"product": "tea", "audience": "students"})


async def test_versions_are_saved_under_the_next_name_listed_shown_and_logged(repository: Repository,
                                                                               tmp_path: Path) -> None:
    templates = Templates(repository, None)
    first = await templates.save("ad", AD_SYSTEM, AD_TEMPLATE, VOICE, by="mod-1", guild_id="42")
    second = await templates.save("ad", AD_SYSTEM, AD_TEMPLATE.replace("voice", "tone"), BrandVoice(), by="mod-2")
    blog = await templates.save("blog", "You blog.", "A post on {topic}.", BrandVoice(tone=("calm",)), by="mod-1")
    assert (first.name, second.name, blog.name) == ("ad-v2", "ad-v3", "blog-v2")
    assert [version.name for version in await templates.list("ad")] == ["ad-v1", "ad-v2", "ad-v3"]
    assert [version.name for version in await templates.list()] == [
        "ad-v1", "ad-v2", "ad-v3", "blog-v1", "blog-v2", "summary-v1"]
    assert await templates.show("ad-v2") == first and first.brand_voice == VOICE
    assert await templates.show("summary-v1") == builtin(TASKS["summary"])
    with pytest.raises(ServiceError, match="no template version named 'ad-v9'"):
        await templates.show("ad-v9")
    database = tmp_path / "data" / "copydesk.sqlite3"
    assert rows(database, "SELECT name, task, created_by FROM template_versions ORDER BY id") == [
        ("ad-v2", "ad", "mod-1"), ("ad-v3", "ad", "mod-2"), ("blog-v2", "blog", "mod-1")]
    assert rows(database, "SELECT guild_id, moderator_id, action, note FROM moderation_actions ORDER BY id") == [
        ("42", "mod-1", "template-version", "ad-v2"), (None, "mod-2", "template-version", "ad-v3"),
        (None, "mod-1", "template-version", "blog-v2")]


async def test_a_bad_version_is_not_stored(repository: Repository, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown placeholder {brand}"):
        await Templates(repository, None).save("ad", AD_SYSTEM, "{product} {audience} {brand}", VOICE, by="mod-1")
    assert rows(tmp_path / "data" / "copydesk.sqlite3", "SELECT count(*) FROM template_versions") == [(0,)]


async def test_two_moderators_saving_at_once_get_two_names(tmp_path: Path) -> None:
    """Two processes' repositories on one file: each reads the same count, the unique name sends one round again."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'copydesk.sqlite3'}"
    first, second = await open_database(url), await open_database(url)
    try:
        saved = await asyncio.gather(*(Templates(Repository(database), None).save(
            "ad", AD_SYSTEM, AD_TEMPLATE, VOICE, by=f"mod-{n}") for n, database in enumerate((first, second))))
    finally:
        await first.close()
        await second.close()
    assert sorted(version.name for version in saved) == ["ad-v2", "ad-v3"]


async def test_task_for_gives_the_catalogue_task_or_the_stored_version(repository: Repository) -> None:
    templates = Templates(repository, None)
    saved = await templates.save("ad", AD_SYSTEM, AD_TEMPLATE, VOICE, by="mod-1")
    assert await templates.task_for("ad", "ad-v1") is TASKS["ad"]
    task = await templates.task_for("ad", saved.name)
    assert task.template_version == "ad-v2" and task.render({"product": "p", "audience": "a"}).user == \
        "An ad for p, for a, in a friendly voice."
    with pytest.raises(ServiceError, match="belongs to the ad task, not to blog"):
        await templates.task_for("blog", "ad-v2")
    with pytest.raises(ServiceError, match="no template version named 'blog-v7'"):
        await templates.task_for("blog", "blog-v7")


async def test_a_preview_renders_and_writes_a_sample_draft_with_the_real_model_storing_nothing(
        service: DraftService, tmp_path: Path) -> None:
    voice = BrandVoice(tone=("warm",), avoid=("cheap",))
    preview = await service.templates.preview("ad", AD_SYSTEM, AD_TEMPLATE, voice, by="mod-1")
    assert preview.prompt.user == ("An ad for a reusable steel water bottle that keeps drinks cold for 24 hours, "
                                   "for weekend hikers, in a friendly voice.")
    assert "- Never use these words: cheap." in preview.prompt.system
    assert preview.text  # the model wrote something
    database = tmp_path / "data" / "copydesk.sqlite3"
    assert rows(database, "SELECT count(*) FROM drafts") == [(0,)]
    assert rows(database, "SELECT count(*) FROM template_versions") == [(0,)]
    saved = await service.templates.save_preview(preview.token, by="mod-1")
    assert saved == PromptTemplate("ad-v2", "ad", AD_SYSTEM, AD_TEMPLATE, voice)
    with pytest.raises(ServiceError, match="saved already, as ad-v2"):
        await service.templates.save_preview(preview.token, by="mod-1")
    with pytest.raises(ServiceError, match="preview has expired"):
        await service.templates.save_preview("no-such-preview", by="mod-1")
    assert rows(database, "SELECT name FROM template_versions") == [("ad-v2",)]


async def test_a_preview_is_checked_against_the_engine_context_first(service: DraftService) -> None:
    # The test engine's context is 512 tokens: a long sample of house copy leaves the ad no room.
    with pytest.raises(InputError, match="over the context of 512"):
        await service.templates.preview("ad", AD_SYSTEM, AD_TEMPLATE, BrandVoice(sample="Slow and exact. " * 80),
                                        by="mod-1")


def test_the_cli_previews_saves_lists_and_shows(tmp_path: Path, cache_dir: Path) -> None:
    (tmp_path / "system.txt").write_text(AD_SYSTEM, encoding="utf-8")
    (tmp_path / "template.txt").write_text(AD_TEMPLATE, encoding="utf-8")
    (tmp_path / "bad.txt").write_text("An ad for {product} by {brand}, for {audience}.", encoding="utf-8")
    (tmp_path / "sample.txt").write_text("Made slowly, by hand, to last.\n", encoding="utf-8")
    new = ["templates", "new", "ad", "--system", "system.txt", "--tone", "warm, direct", "--use", "handmade",
           "--avoid", "cheap", "--avoid", "deal", "--sample", "sample.txt"]

    refused = copydesk(*new, "--template", "bad.txt", cwd=tmp_path, cache_dir=cache_dir)
    assert refused.returncode == 1 and "Error: unknown placeholder {brand} for ad" in refused.stderr
    assert "Traceback" not in refused.stderr

    previewed = copydesk(*new, "--template", "template.txt", "--preview-only", cwd=tmp_path, cache_dir=cache_dir)
    assert previewed.returncode == 0, previewed.stderr
    assert "- Never use these words: cheap, deal." in previewed.stdout and "sample draft:" in previewed.stdout
    assert previewed.stdout.rstrip().endswith("not saved (--preview-only)")

    saved = copydesk(*new, "--template", "template.txt", "--user", "lena", cwd=tmp_path, cache_dir=cache_dir)
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.rstrip().endswith("saved as ad-v2")
    database = tmp_path / "data" / "copydesk.sqlite3"
    assert rows(database, "SELECT name, created_by FROM template_versions") == [("ad-v2", "cli:lena")]

    listed = copydesk("templates", "list", "--task", "ad", cwd=tmp_path, cache_dir=cache_dir)
    assert listed.returncode == 0, listed.stderr
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == ["ad-v1", "ad-v2"]
    shown = copydesk("templates", "show", "ad-v2", cwd=tmp_path, cache_dir=cache_dir)
    assert shown.returncode == 0, shown.stderr
    assert "tone: warm, direct\nuse: handmade\navoid: cheap, deal\nsample:\nMade slowly, by hand, to last." \
        in shown.stdout
    missing = copydesk("templates", "show", "ad-v9", cwd=tmp_path, cache_dir=cache_dir)
    assert missing.returncode == 1 and "no template version named 'ad-v9'" in missing.stderr
