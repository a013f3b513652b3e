"""Languages told offline by their script, quality signals against hand-computed figures, and both
recorded with a draft written by the real model, shown under it and exported in `raw`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bot.config import DraftingSettings, PrivacySettings
from bot.discord.drafting import final_message
from bot.service import DraftService, Member, Policy
from generation import InputError, get_task
from generation.language import choose_language, detect_language
from generation.quality import characters_per_sentence, flesch_reading_ease, quality_line, quality_signals, syllable_count
from storage import DraftStatus, Repository

ALICE = Member("console:alice", guild_id="1")


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("a solar lantern for campers", "en"),
        ("高山绿茶，上班族", "zh"),
        ("抹茶のアイスクリーム", "ja"),  # kana: Japanese, though it has Han characters too
        ("여름 캠핑용 랜턴", "ko"),
        ("Bio-Tee für das Büro", "en"),  # Latin script is taken as English: German must be chosen
        ("iPhone 手机壳，轻薄耐用", "zh"),  # the script most letters are in wins: 7 Han, 6 Latin
        ("iPhone 手机壳", "en"),
        ("", "en"),
        ("12345 !!!", "en"),
    ],
)
def test_languages_are_told_by_their_script(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_the_members_choice_wins_then_the_servers_then_the_request() -> None:
    assert choose_language("fr", "zh", "lantern") == "fr"
    assert choose_language("auto", "zh", "lantern") == "zh"
    assert choose_language("auto", "auto", "高山绿茶") == "zh"
    with pytest.raises(InputError, match="unknown language 'xx'; choose one of: en, zh, ja, ko, fr, de, es"):
        choose_language("xx", "auto", "lantern")


@pytest.mark.parametrize(("word", "syllables"), [("make", 1), ("table", 2), ("be", 1), ("free", 1), ("rhythm", 1),
                                                 ("beautiful", 3), ("illuminate", 4), ("don't", 1), ("queue", 1)])
def test_syllables_are_vowel_groups_less_a_silent_e(word: str, syllables: int) -> None:
    assert syllable_count(word) == syllables


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # 6 words, 1 sentence, 6 syllables: 206.835 − 1.015 × 6 − 84.6 × 6/6
        ("The cat sat on the mat.", 206.835 - 1.015 * 6 - 84.6),
        # 7 words, 2 sentences, 16 syllables (beau·ti·ful 3, lan·terns 2, il·lu·mi·nate 4, camp·si·tes 3 by
        # the heuristic, buy 1, one 1, to·day 2): 206.835 − 1.015 × 3.5 − 84.6 × 16/7 ≈ 9.91
        ("Beautiful lanterns illuminate campsites. Buy one today!", 206.835 - 1.015 * 3.5 - 84.6 * 16 / 7),
        # No closing stop still makes one sentence.
        ("Go now", 206.835 - 1.015 * 2 - 84.6),
    ],
)
def test_flesch_reading_ease_against_hand_computed_figures(text: str, expected: float) -> None:
    assert flesch_reading_ease(text) == pytest.approx(expected)


def test_chinese_readability_is_characters_per_sentence() -> None:
    assert characters_per_sentence("绿茶清香。每天一杯！") == 4
    assert characters_per_sentence("好茶。真 的很好喝吗？是") == (2 + 6 + 1) / 3  # spaces do not count; no final stop needed


def test_signals_count_in_the_languages_unit_and_name_brand_words() -> None:
    english = quality_signals("Acme lanterns light the night. Buy one!", "en", 50, ["Acme", "TrailGlow"])
    assert english == {"language": "en", "unit": "words", "length": 7, "target": 50,
                       "flesch_reading_ease": round(flesch_reading_ease("Acme lanterns light the night. Buy one!"), 1),
                       "characters_per_sentence": None, "brand_present": ["Acme"], "brand_missing": ["TrailGlow"]}
    chinese = quality_signals("绿茶清香。每天 一杯！", "zh", 50, ["清香"])
    assert (chinese["unit"], chinese["length"], chinese["target"]) == ("characters", 10, 100)
    assert (chinese["flesch_reading_ease"], chinese["characters_per_sentence"]) == (None, 4.0)
    assert chinese["brand_present"] == ["清香"]
    german = quality_signals("Licht für die Nacht.", "de", 0, [])
    assert (german["length"], german["target"], german["flesch_reading_ease"]) == (4, None, None)
    assert quality_line(english) == f"7 words (target ~50) · Flesch {english['flesch_reading_ease']:.0f} (very easy) · " \
                                    "brand: Acme ✓, TrailGlow ✗"
    assert quality_line(chinese) == "10 characters (target ~100) · 4 characters per sentence · brand: 清香 ✓"
    assert quality_line(german) == "4 words"


async def test_a_draft_in_chinese_is_asked_for_recorded_counted_shown_and_exported(
    repository: Repository, engine: object, policy: Policy, tmp_path: Path
) -> None:
    service = DraftService(repository, engine,  # type: ignore[arg-type]
                           Policy(engine=policy.engine, moderation=policy.moderation, member_key=policy.member_key,
                                  privacy=PrivacySettings(training_consent_default=True),
                                  drafting=DraftingSettings(brand_words=("绿茶",))))
    detected = await service.create_draft(ALICE, "ad", {"product": "高山绿茶", "audience": "上班族"})
    chosen = await service.create_draft(ALICE, "ad", {"product": "oat milk", "audience": "baristas"}, language="zh")
    english = await service.create_draft(ALICE, "ad", {"product": "oat milk", "audience": "baristas"})
    assert (detected.language, chosen.language, english.language) == ("zh", "zh", "en")
    assert chosen.user_prompt.endswith("\n\nWrite it in Chinese (简体中文).")
    assert english.user_prompt == get_task("ad").render({"product": "oat milk", "audience": "baristas"}).user, \
        "English prompts are the templates' own"
    steps = [step async for step in service.generate(chosen.id)]
    assert steps[-1].status == DraftStatus.DONE and steps[-1].quality is not None
    stored = await repository.get_draft(chosen.id)
    assert stored.quality == steps[-1].quality and stored.quality["unit"] == "characters"
    assert stored.quality["length"] == len("".join(stored.output.split()))
    assert stored.quality["brand_present"] + stored.quality["brand_missing"] == ["绿茶"]
    content, _ = final_message(stored, stored.output, ())
    assert content.endswith(f"\n-# {quality_line(stored.quality)}")
    again = await service.regenerate(ALICE, chosen.id)
    assert again.language == "zh", "a regeneration keeps the language"

    await service.export(tmp_path, formats=("raw",))
    rows = [json.loads(line) for split in ("train", "test") if (tmp_path / f"raw-{split}.jsonl").exists()
            for line in (tmp_path / f"raw-{split}.jsonl").read_text().splitlines()]
    parquet = [row for split in ("train", "test") if (tmp_path / f"raw-{split}.parquet").exists()
               for row in pq.read_table(tmp_path / f"raw-{split}.parquet").to_pylist()]
    assert [(row["id"], row["language"], row["quality"]) for row in rows] == [(chosen.id, "zh", stored.quality)]
    assert [json.loads(row["quality"]) for row in parquet] == [stored.quality], "Parquet keeps the signals as JSON text"
