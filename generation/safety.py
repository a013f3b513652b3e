"""Automatic checks on every output before a member sees it: blocked terms, personal data, a leaked system prompt.

A check that trips holds the draft for a moderator; the text is not shown until one releases it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}", re.IGNORECASE)
# Nine or more digits, optionally grouped by spaces, dots, dashes or brackets, optionally with a leading +.
PHONE = re.compile(r"(?<![\w.])\+?\(?\d(?:[\s().-]{0,2}\d){8,14}(?![\w])")
LEAK_WINDOW_WORDS = 8
# A word of the system prompt that looks like a code (letters and digits, maybe dashes, e.g. a canary
# "PELICAN-7731"): one such word in the output is a leak, however few words come with it.
CODE_WORD = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[^\W\d_])[\w-]{4,}(?![\w-])")


@dataclass(frozen=True)
class SafetyPolicy:
    """Which checks run; no defaults here: the deployment's come from its settings (bot/config.py)."""

    blocked_terms: tuple[str, ...]
    detect_personal_data: bool
    detect_prompt_leak: bool


def review_reasons(text: str, system_prompt: str, policy: SafetyPolicy) -> list[str]:
    """Why this output must wait for a moderator; empty when it may be shown."""
    reasons: list[str] = []
    lowered = text.casefold()
    for term in policy.blocked_terms:
        if term.strip() and re.search(rf"(?<!\w){re.escape(term.strip().casefold())}(?!\w)", lowered):
            reasons.append(f"contains the blocked term {term.strip()!r}")
    if policy.detect_personal_data:
        if EMAIL.search(text):
            reasons.append("contains an e-mail address")
        if PHONE.search(text):
            reasons.append("contains a phone number")
    if policy.detect_prompt_leak and _leaks(text, system_prompt):
        reasons.append("repeats the system prompt")
    return reasons


def redact_code_words(text: str, system_prompt: str) -> str:
    """The text with the system prompt's code words replaced, for showing a held draft to anyone at all."""
    for code in set(CODE_WORD.findall(system_prompt)):
        text = re.sub(re.escape(code), "[redacted]", text, flags=re.IGNORECASE)
    return text


def _leaks(text: str, system_prompt: str) -> bool:
    """True when the output repeats a code word of the system prompt, or any run of
    LEAK_WINDOW_WORDS consecutive words of it."""
    lowered = text.casefold()
    if any(code.casefold() in lowered for code in CODE_WORD.findall(system_prompt)):
        return True
    prompt_words = _words(system_prompt)
    if len(prompt_words) < LEAK_WINDOW_WORDS:
        return bool(prompt_words) and " ".join(prompt_words) in " ".join(_words(text))
    output = " " + " ".join(_words(text)) + " "
    return any(
        " " + " ".join(prompt_words[i:i + LEAK_WINDOW_WORDS]) + " " in output
        for i in range(len(prompt_words) - LEAK_WINDOW_WORDS + 1)
    )


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())
