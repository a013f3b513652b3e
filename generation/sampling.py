"""Sampling settings: one small dataclass, recorded with every draft as provenance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 50

    def capped(self, max_new_tokens: int | None) -> Sampling:
        """The same settings with the token budget lowered to a deployment-wide cap, if one is set."""
        if not max_new_tokens or max_new_tokens >= self.max_new_tokens:
            return self
        return replace(self, max_new_tokens=max_new_tokens)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)
