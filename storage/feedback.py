"""What an export sees of a draft: training fields and feedback totals, never a member id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.models import Draft


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
    quantization: str
    sampling: dict[str, Any]
    seed: int | None
    created_at: datetime
    ups: int
    downs: int
    improvements: tuple[str, ...]

    @property
    def request_id(self) -> int:
        """The original draft of the request; regenerations point at it."""
        return self.parent_id or self.id

    @property
    def score(self) -> float | None:
        """Mean rating in [-1, 1], or None when nobody rated the draft."""
        votes = self.ups + self.downs
        return (self.ups - self.downs) / votes if votes else None

    @classmethod
    def from_draft(cls, draft: Draft) -> FeedbackRecord:
        """Needs the draft's ratings and improvements loaded."""
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
            quantization=draft.quantization,
            sampling=dict(draft.sampling),
            seed=draft.seed,
            created_at=draft.created_at,
            ups=sum(1 for rating in draft.ratings if rating.value > 0),
            downs=sum(1 for rating in draft.ratings if rating.value < 0),
            improvements=tuple(improvement.text for improvement in draft.improvements),
        )
