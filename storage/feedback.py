"""What an export sees of a draft: training fields and feedback totals, never a member id.

The author appears only as a keyed pseudonym, and only when the export was given a key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement

from storage.models import Draft, Improvement


@dataclass(frozen=True, slots=True)
class FeedbackFilter:
    """Which stored drafts an export reads; empty tuples and None mean no restriction."""

    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    tasks: tuple[str, ...] = ()
    guild_id: str | None = None
    models: tuple[str, ...] = ()
    template_versions: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The restrictions in use, for a dataset card; nothing that identifies a member."""
        described: dict[str, Any] = {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "tasks": list(self.tasks), "guild": self.guild_id is not None,
            "models": list(self.models), "template_versions": list(self.template_versions),
        }
        return {name: value for name, value in described.items() if value}

    def conditions(self) -> list[ColumnElement[bool]]:
        """The restrictions as SQL conditions on drafts: one home for the export reads and the exclusion counts."""
        conditions: list[ColumnElement[bool]] = []
        if self.since is not None:
            conditions.append(Draft.created_at >= self.since)
        if self.until is not None:
            conditions.append(Draft.created_at < self.until)
        if self.guild_id is not None:
            conditions.append(Draft.guild_id == self.guild_id)
        for column, wanted in ((Draft.task, self.tasks), (Draft.model, self.models),
                               (Draft.template_version, self.template_versions)):
            if wanted:
                conditions.append(column.in_(wanted))
        return conditions


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    id: int
    parent_id: int | None
    task: str
    inputs: dict[str, str]
    system_prompt: str
    user_prompt: str
    output: str
    template_version: str
    model: str
    model_version: str
    quantization: str
    sampling: dict[str, Any]
    seed: int | None
    created_at: datetime
    ups: int
    downs: int
    improvements: tuple[str, ...]
    author: str | None = None  # a pseudonym ("m_…"), never the member id
    language: str | None = None
    quality: dict[str, Any] | None = None  # the finished draft's quality signals
    platform: str = "generic"  # the ad platform it was written for, and its fields (see drafts.fields)
    fields: list[dict[str, Any]] | None = None
    variant_group: int | None = None  # shown beside other variants of its request: see storage.models.VariantPick
    picks: int = 0  # members who picked it over the other variants of its group
    experiment_id: int | None = None  # the experiment that chose what wrote it, and its variant's label
    variant: str | None = None

    @property
    def request_id(self) -> int:
        """The original draft of the request; regenerations point at it."""
        return self.parent_id or self.id

    @property
    def votes(self) -> int:
        return self.ups + self.downs

    @property
    def score(self) -> float | None:
        """Mean rating in [-1, 1], or None when nobody rated the draft."""
        votes = self.ups + self.downs
        return (self.ups - self.downs) / votes if votes else None

    @classmethod
    def from_draft(
        cls,
        draft: Draft,
        *,
        ups: int,
        downs: int,
        improvements: Iterable[Improvement],
        author: str | None = None,
        picks: int = 0,
    ) -> FeedbackRecord:
        """`improvements`: those whose writers allow training use."""
        return cls(
            id=draft.id,
            parent_id=draft.parent_id,
            task=draft.task,
            inputs=dict(draft.inputs),
            system_prompt=draft.system_prompt,
            user_prompt=draft.user_prompt,
            output=draft.output,
            template_version=draft.template_version,
            model=draft.model,
            model_version=draft.model_version,
            quantization=draft.quantization,
            sampling=dict(draft.sampling),
            seed=draft.seed,
            created_at=draft.created_at,
            ups=ups,
            downs=downs,
            improvements=tuple(improvement.text for improvement in improvements),
            author=author,
            language=draft.language,
            quality=draft.quality,
            platform=draft.platform,
            fields=draft.fields,
            variant_group=draft.variant_group,
            picks=picks,
            experiment_id=draft.experiment_id,
            variant=draft.variant,
        )
