"""Quality signals beside a finished draft: its length against the task's target, a readability
figure where one is meaningful, and the brand words it has or lacks. Computed offline.

English readability is Flesch reading ease, 206.835 − 1.015 × words/sentence − 84.6 × syllables/word
(60–69 is plain English), with syllables counted by vowel groups: no pronunciation dictionary to
download (textstat fetches one at run time). Chinese and Japanese get characters per sentence,
sentences ending at 。！？ (shorter reads easier). Other languages get no readability figure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from generation.language import language, phrase_pattern

CHARACTERS_PER_WORD = 2  # a target given in English words, told in Chinese or Japanese characters
WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
SENTENCE_END = re.compile(r"[.!?。！？]+")
CJK_SENTENCE_END = re.compile(r"[。！？!?]+")
VOWEL_GROUP = re.compile(r"[aeiouy]+")
FLESCH_BANDS = ((90, "very easy"), (80, "easy"), (70, "fairly easy"), (60, "plain"), (50, "fairly difficult"),
                (30, "difficult"), (float("-inf"), "very difficult"))


def quality_signals(text: str, language_code: str, target_words: int, brand_words: Sequence[str]) -> dict[str, Any]:
    """The signals as plain data, to store with the draft and export as they are."""
    unit = language(language_code).unit
    signals: dict[str, Any] = {
        "language": language_code,
        "unit": unit,
        "length": len(WORD.findall(text)) if unit == "words" else len(re.sub(r"\s", "", text)),
        "target": target_words * (CHARACTERS_PER_WORD if unit == "characters" else 1) or None,
    }
    # Every key always there (None where it has no meaning), so exports keep one shape across languages.
    signals["flesch_reading_ease"] = round(flesch_reading_ease(text), 1) \
        if language_code == "en" and WORD.search(text) else None
    signals["characters_per_sentence"] = round(characters_per_sentence(text), 1) \
        if unit == "characters" and text.strip() else None
    present = [word for word in brand_words if re.search(phrase_pattern(word), text, re.IGNORECASE)]
    signals["brand_present"] = present
    signals["brand_missing"] = [word for word in brand_words if word not in present]
    return signals


def flesch_reading_ease(text: str) -> float:
    words = [word.casefold() for word in WORD.findall(text)]
    sentences = max(1, len([part for part in SENTENCE_END.split(text) if WORD.search(part)]))
    syllables = sum(map(syllable_count, words))
    return 206.835 - 1.015 * len(words) / sentences - 84.6 * syllables / max(1, len(words))


def syllable_count(word: str) -> int:
    """Vowel groups, less a silent final e ("make"; not "table" nor "be"), at least one."""
    word = word.casefold().replace("’", "'").split("'")[0]
    count = len(VOWEL_GROUP.findall(word))
    if count > 1 and word.endswith("e") and not word.endswith(("le", "ee", "ye")):
        count -= 1
    return max(1, count)


def characters_per_sentence(text: str) -> float:
    sentences = [re.sub(r"\s", "", part) for part in CJK_SENTENCE_END.split(text)]
    sentences = [sentence for sentence in sentences if sentence]
    return sum(map(len, sentences)) / max(1, len(sentences))


def quality_line(signals: Mapping[str, Any]) -> str:
    """The signals in one short line, for the message that shows the draft."""
    length = f"{signals['length']} {signals['unit']}"
    parts = [f"{length} (target ~{signals['target']})" if signals.get("target") else length]
    if (flesch := signals.get("flesch_reading_ease")) is not None:
        parts.append(f"Flesch {flesch:.0f} ({next(label for floor, label in FLESCH_BANDS if flesch >= floor)})")
    if (per_sentence := signals.get("characters_per_sentence")) is not None:
        parts.append(f"{per_sentence:.0f} characters per sentence")
    brand = [f"{word} ✓" for word in signals.get("brand_present", [])]
    brand += [f"{word} ✗" for word in signals.get("brand_missing", [])]
    if brand:
        parts.append("brand: " + ", ".join(brand))
    return " · ".join(parts)
