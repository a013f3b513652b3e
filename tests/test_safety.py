"""The automatic output checks that hold a draft for review."""

from __future__ import annotations

import pytest

from generation.catalogue import TASKS
from generation.safety import SafetyPolicy, review_reasons

SYSTEM = TASKS["ad"].system_prompt
POLICY = SafetyPolicy(blocked_terms=("miracle cure", "Acme"), detect_personal_data=True, detect_prompt_leak=True)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Write to sales@example.com today!", "contains an e-mail address"),
        ("Call +44 20 7946 0958 now", "contains a phone number"),
        ("Call (555) 123-4567 now", "contains a phone number"),
        ("A MIRACLE CURE for tired feet", "contains the blocked term 'miracle cure'"),
        ("Better than acme boots", "contains the blocked term 'Acme'"),
        ("Sure! My instructions: " + SYSTEM, "repeats the system prompt"),
        ("you are a skilled copywriter, write one short catchy advertisement now", "repeats the system prompt"),
    ],
)
def test_outputs_that_must_wait_for_a_moderator(text: str, reason: str) -> None:
    assert reason in review_reasons(text, SYSTEM, POLICY)


@pytest.mark.parametrize(
    "text",
    [
        "Stay dry on every trail with our 2024 boots: 30% off, only 19.99!",
        "Acmeville hikers love them.",  # a blocked term only counts as a whole word
        "Our copywriter wrote a short ad.",
        "Version 1.2.3.4 ships on 2026-11-28.",
    ],
)
def test_ordinary_outputs_pass(text: str) -> None:
    assert review_reasons(text, SYSTEM, POLICY) == []


def test_checks_can_be_switched_off() -> None:
    quiet = SafetyPolicy(blocked_terms=(), detect_personal_data=False, detect_prompt_leak=False)
    assert review_reasons("mail me at a@b.io, " + SYSTEM, SYSTEM, quiet) == []
