"""A platform draft's text and its fields: the layout the model is asked for, the parse back into
fields, each counted by the platform's rule, and the text rendered from the fields again.

The model writes one field a line, `Headline 1: …`; whatever else it writes is ignored. A field is
`fits`, `over` (longer than its limit) or `missing` (the platform needs more of it than the model wrote).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from generation.platforms.specs import FieldSpec, Platform, get_platform
from generation.prompt import Prompt

MARKUP = "*_` "  # bold, italics and code marks small models wrap a field in
QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "「": "」"}


class FieldStatus(StrEnum):
    FITS = "fits"
    OVER = "over"
    MISSING = "missing"


@dataclass(frozen=True)
class PlatformField:
    """One field as stored with the draft and shown to the member."""

    key: str
    index: int  # 1-based among the fields of its kind
    label: str
    text: str
    count: int
    limit: int
    recommended: int | None
    status: FieldStatus
    regenerations: int = 0  # how many times it was written again because it did not fit

    def line(self) -> str:
        """'Headline 1 (27/30): …', with the overrun or the absence said plainly."""
        if self.status == FieldStatus.MISSING:
            return f"{self.label}: ⚠️ missing (the model did not write one that fits)"
        note = f" ⚠️ over the limit by {self.count - self.limit}" if self.status == FieldStatus.OVER else ""
        advice = (f", {self.recommended} recommended" if self.recommended and self.count > self.recommended
                  and self.status == FieldStatus.FITS else "")
        return f"{self.label} ({self.count}/{self.limit}{advice}){note}: {self.text}"


@dataclass(frozen=True)
class PlatformDraft:
    """A finished draft cut into its platform's fields."""

    platform: str
    fields: tuple[PlatformField, ...]

    @property
    def fits(self) -> bool:
        return all(field.status == FieldStatus.FITS for field in self.fields)

    def text(self) -> str:
        """The fields in the layout the model was asked for: the draft's stored output."""
        return "\n".join(f"{field.label}: {field.text}" for field in self.fields if field.text)

    def lines(self) -> list[str]:
        return [field.line() for field in self.fields]

    def to_json(self) -> list[dict[str, Any]]:
        return [{**asdict(field), "status": str(field.status)} for field in self.fields]

    @classmethod
    def from_json(cls, platform: str, stored: list[dict[str, Any]]) -> PlatformDraft:
        return cls(platform, tuple(PlatformField(**{**item, "status": FieldStatus(item["status"])}) for item in stored))

    def replace_field(self, position: int, field: PlatformField) -> PlatformDraft:
        fields = list(self.fields)
        fields[position] = field
        return replace(self, fields=tuple(fields))


def layout_prompt(platform: Platform, prompt: Prompt) -> Prompt:
    """The task's prompt, asking for the platform's fields in labelled lines with their limits."""
    lines = [f"{spec.label_of(index)}: …" for spec in platform.fields for index in range(1, spec.ask + 1)]
    limits = "; ".join(f"each {spec.label.lower()} at most {spec.target} characters" for spec in platform.fields)
    system = (f"You are a skilled copywriter. Write {platform.title}. Answer with exactly these lines and "
              f"nothing else:\n" + "\n".join(lines) + f"\nKeep {limits}. Do not explain what you are doing.")
    return Prompt(system=system, user=prompt.user)


def field_prompt(platform: Platform, spec: FieldSpec, request: str, too_long: str | None) -> Prompt:
    """Ask again for one field that did not fit (or was missing), with its limit."""
    before = f' The last one was too long: "{too_long}".' if too_long else ""
    return Prompt(
        system=(f"You are a skilled copywriter writing {platform.title}. Answer with one "
                f"{spec.label.lower()} only, on one line, at most {spec.target} characters.{before}"),
        user=request,
    )


def _label_pattern(spec: FieldSpec) -> re.Pattern[str]:
    words = r"\s+".join(map(re.escape, spec.label.split()))
    return re.compile(rf"^[\s*#>_-]*{words}(?:\s*(\d+))?[\s*_]*[:：]\s*(.*)$", re.IGNORECASE)


def parse(platform_name: str, text: str) -> PlatformDraft:
    """Cut the model's text into the platform's fields, counted; missing ones are there, empty."""
    platform = get_platform(platform_name)
    found: dict[str, list[str]] = {spec.key: [] for spec in platform.fields}
    patterns = [(spec, _label_pattern(spec)) for spec in platform.fields]
    for line in text.splitlines():
        for spec, pattern in patterns:
            if (match := pattern.match(line)) and (value := clean_field(match.group(2))):
                if len(found[spec.key]) < spec.max_count:
                    found[spec.key].append(value)
                break
    fields: list[PlatformField] = []
    for spec in platform.fields:
        values = found[spec.key] + [""] * max(0, spec.min_count - len(found[spec.key]))
        fields.extend(measure(platform, spec, index, value) for index, value in enumerate(values, start=1))
    return PlatformDraft(platform.name, tuple(fields))


def clean_field(value: str) -> str:
    """A field's text without the quotes and markup small models wrap it in."""
    value = " ".join(value.split()).strip(MARKUP)
    while len(value) >= 2 and QUOTE_PAIRS.get(value[0]) == value[-1]:
        value = value[1:-1].strip(MARKUP)
    return value


def measure(platform: Platform, spec: FieldSpec, index: int, text: str, regenerations: int = 0) -> PlatformField:
    """A field counted by its platform's rule, and whether it fits."""
    count = platform.rule.count(text)
    status = FieldStatus.MISSING if not text else FieldStatus.OVER if count > spec.limit else FieldStatus.FITS
    return PlatformField(spec.key, index, spec.label_of(index), text, count, spec.limit, spec.recommended, status,
                         regenerations)
