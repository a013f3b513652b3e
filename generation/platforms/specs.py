"""The platforms a draft can be written for, as data: their fields, limits, counts and counting rule.

`generic` is the free-form draft copydesk always wrote. Every other platform asks the model for its
fields in labelled lines, so the text can be cut into the fields the platform's editor takes.
"""

from __future__ import annotations

from dataclasses import dataclass

from generation.errors import InputError
from generation.platforms.counting import DOUBLE_WIDTH, PLAIN, X_WEIGHTED, CountingRule


@dataclass(frozen=True)
class FieldSpec:
    """One kind of field of a platform's ad: its limit (enforced), the platform's recommendation
    (shown), and how many of it an ad takes (`ask` is how many the model is asked to write)."""

    label: str  # as the model writes it and a member reads it: "Headline", "Primary text"
    limit: int
    recommended: int | None = None
    min_count: int = 1
    max_count: int = 1
    ask: int = 1
    source: str = ""

    @property
    def target(self) -> int:
        """The length the model is asked for: the platform's recommendation where it has one, else its limit."""
        return min(self.limit, self.recommended or self.limit)

    @property
    def key(self) -> str:
        return self.label.lower().replace(" ", "_")

    def label_of(self, index: int) -> str:
        """'Headline 3' where a platform takes several, 'Headline' where it takes one."""
        return f"{self.label} {index}" if self.max_count > 1 else self.label


@dataclass(frozen=True)
class Platform:
    name: str
    title: str  # "a Google responsive search ad": how the prompt names what it asks for
    fields: tuple[FieldSpec, ...]
    rule: CountingRule
    max_new_tokens: int = 0  # the token budget the fields need; 0 keeps the task's

    @property
    def structured(self) -> bool:
        return bool(self.fields)

    def field(self, key: str) -> FieldSpec:
        return next(spec for spec in self.fields if spec.key == key)


GENERIC = "generic"

PLATFORMS: dict[str, Platform] = {
    platform.name: platform
    for platform in (
        Platform(GENERIC, "an advertisement", (), PLAIN),
        # support.google.com/google-ads/answer/7684791: 3-15 headlines of at most 30 characters and 2-4
        # descriptions of at most 90; the API rejects longer text (AdError.LINE_TOO_WIDE).
        Platform("google", "a Google responsive search ad", (
            FieldSpec("Headline", limit=30, min_count=3, max_count=15, ask=5,
                      source="support.google.com/google-ads/answer/7684791"),
            FieldSpec("Description", limit=90, min_count=2, max_count=4, ask=2,
                      source="support.google.com/google-ads/answer/7684791"),
        ), DOUBLE_WIDTH, max_new_tokens=200),
        # facebook.com/business/ads-guide recommends about 125 characters of primary text (shown before
        # "See more"), 40 of headline, 30 of description; Ads Manager takes up to 2,200 and 255
        # (practitioners' guides: verify against Ads Manager).
        Platform("meta", "a Meta (Facebook and Instagram) feed ad", (
            FieldSpec("Primary text", limit=2200, recommended=125, source="facebook.com/business/ads-guide"),
            FieldSpec("Headline", limit=255, recommended=40, source="facebook.com/business/ads-guide"),
            FieldSpec("Description", limit=255, recommended=30, source="facebook.com/business/ads-guide"),
        ), PLAIN, max_new_tokens=160),
        # linkedin.com/help/lms/answer/a426534 (single image ads): introductory text 150 recommended,
        # 600 at most; headline 70 / 200; description 100 / 300.
        Platform("linkedin", "a LinkedIn single image ad", (
            FieldSpec("Intro", limit=600, recommended=150, source="linkedin.com/help/lms/answer/a426534"),
            FieldSpec("Headline", limit=200, recommended=70, source="linkedin.com/help/lms/answer/a426534"),
            FieldSpec("Description", limit=300, recommended=100, source="linkedin.com/help/lms/answer/a426534"),
        ), PLAIN, max_new_tokens=200),
        # developer.x.com/en/docs/counting-characters: one post of at most 280 weighted characters.
        Platform("x", "a post on X", (
            FieldSpec("Post", limit=280, source="developer.x.com/en/docs/counting-characters"),
        ), X_WEIGHTED, max_new_tokens=120),
    )
}
PLATFORM_NAMES: tuple[str, ...] = tuple(PLATFORMS)


def get_platform(name: str) -> Platform:
    try:
        return PLATFORMS[name]
    except KeyError:
        raise InputError(f"unknown platform {name!r}; choose one of: {', '.join(PLATFORMS)}") from None
