"""The languages a draft can be written in, told apart offline by their script.

Detection looks only at the characters' scripts, which is all a short request reliably shows:
kana means Japanese, Hangul Korean, Han characters without kana Chinese; Latin text is taken as
English (French, German or Spanish must be chosen, their script being the same). Chinese and
Japanese are counted in characters, the others in words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from generation.errors import InputError

AUTO = "auto"  # the server's language, else the request's


@dataclass(frozen=True)
class Language:
    code: str
    name: str  # as the prompt names it to the model
    unit: Literal["words", "characters"]  # how its length is counted


LANGUAGES: dict[str, Language] = {language.code: language for language in (
    Language("en", "English", "words"),
    Language("zh", "Chinese (简体中文)", "characters"),
    Language("ja", "Japanese (日本語)", "characters"),
    Language("ko", "Korean (한국어)", "words"),
    Language("fr", "French", "words"),
    Language("de", "German", "words"),
    Language("es", "Spanish", "words"),
)}
DEFAULT_LANGUAGE = "en"

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]")
HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
# Scripts written without spaces between words: a pattern's word boundaries mean nothing there.
UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def detect_language(text: str) -> str:
    """The language a text is most likely in, by the script most of its letters are written in."""
    han, kana, hangul, latin = (len(script.findall(text)) for script in (HAN, KANA, HANGUL, LATIN))
    if kana and kana + han >= latin:
        return "ja"
    if hangul and hangul >= max(han, latin):
        return "ko"
    if han and han >= latin:
        return "zh"
    return DEFAULT_LANGUAGE


def choose_language(chosen: str, server_default: str, request: str) -> str:
    """The language a draft is written in: the member's choice, else the server's setting, else the request's."""
    for code in (chosen, server_default):
        if code and code != AUTO:
            return language(code).code
    return detect_language(request)


def language(code: str) -> Language:
    try:
        return LANGUAGES[code]
    except KeyError:
        raise InputError(f"unknown language {code!r}; choose one of: {', '.join(LANGUAGES)}") from None


def phrase_pattern(phrase: str) -> str:
    """A regular expression for a word or phrase: whole words where the script has spaces, anywhere where it has none."""
    escaped = re.escape(phrase)
    return escaped if UNSPACED.search(phrase) else rf"(?<!\w){escaped}(?!\w)"


def language_instruction(code: str) -> str:
    """What the prompt adds so the model writes in the language; nothing for English, the templates' own."""
    return "" if code == DEFAULT_LANGUAGE else f"\n\nWrite it in {language(code).name}."
