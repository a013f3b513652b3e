"""Rates the team can trust: a share with its Wilson score interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


@dataclass(frozen=True)
class Rate:
    """`hits` of `total`, with its Wilson 95 % interval (sound at small n and near 0 or 1, unlike p ± 1.96·se)."""

    hits: int
    total: int

    @property
    def share(self) -> float:
        return self.hits / self.total if self.total else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.hits, self.total)

    def percent(self) -> str:
        """`41% [30–53]`."""
        low, high = self.interval
        return f"{100 * self.share:.0f}% [{100 * low:.0f}–{100 * high:.0f}]"


def wilson_interval(hits: int, total: int, z: float = Z95) -> tuple[float, float]:
    if total <= 0:
        return 0.0, 1.0
    share = hits / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
