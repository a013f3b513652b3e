"""Rates the team can trust: a share with its Wilson score interval, and which version is likely best."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from storage import VersionTally

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


@dataclass(frozen=True)
class Chance:
    """How likely a version is the best of those compared, and what choosing it would cost if it is not."""

    best: float  # P(its 👍 rate is the highest)
    expected_loss: float  # E[max rate − its rate], as a share (0.002: 0.2 points)


def chances_to_be_best(votes: Sequence[tuple[int, int]], *, draws: int = 200_000, seed: int = 0) -> list[Chance]:
    """Each (👍, 👎) as a Beta(1 + 👍, 1 + 👎) posterior on its rate (a uniform prior), sampled jointly.

    Sampling, as PostHog's experiments do, gives both figures for any number of versions from the
    same draws; at 200,000 draws a probability is within about ±0.002 (seeded, so reproducible).
    """
    rng = np.random.default_rng(seed)
    rates = np.stack([rng.beta(1 + up, 1 + down, size=draws) for up, down in votes])
    best = np.bincount(rates.argmax(axis=0), minlength=len(votes)) / draws
    loss = (rates.max(axis=0) - rates).mean(axis=1)
    return [Chance(float(b), float(expected)) for b, expected in zip(best, loss, strict=True)]


@dataclass(frozen=True)
class DecisionRule:
    """When the numbers say one version writes better: PostHog's experiment defaults (see the README)."""

    min_votes: int = 100  # counted votes each version needs before any verdict
    win_probability: float = 0.9
    max_expected_loss: float = 0.01  # a share: 0.01 is one point of 👍 rate
    votes_per_member: int = 25  # a member's first votes on a version count, no more

    def describe(self) -> str:
        return (f"rule: every version needs {self.min_votes} counted votes (a member's first {self.votes_per_member} "
                f"per version); one wins at ≥ {self.win_probability:.0%} probability to be best with an expected "
                f"loss ≤ {100 * self.max_expected_loss:.1f} points (Beta(1+👍, 1+👎) posteriors)")

    def verdict(self, votes: Sequence[tuple[str, int, int]]) -> str:
        """The verdict on (name, 👍, 👎) per version, in the words the README gives."""
        return self.decide(votes)[0]

    def decide(self, votes: Sequence[tuple[str, int, int]]) -> tuple[str, str | None]:
        """The verdict, and the version it declares best if it declares one, from one sampling of the posteriors."""
        if len(votes) < 2:
            return "nothing to compare: one version has drafts", None
        short = [(name, up + down) for name, up, down in votes if up + down < self.min_votes]
        if short:
            fewest = min(short, key=lambda named: named[1])
            return (f"not enough yet: {fewest[1]} of {self.min_votes} counted votes for {fewest[0]}"
                    f"{f' (and {len(short) - 1} more short)' if len(short) > 1 else ''}"), None
        name, chance = self._leader(votes)
        figures = f"{chance.best:.0%} probability to be best, expected loss {100 * chance.expected_loss:.1f} points"
        if self._wins(chance):
            return f"{name} ahead: {figures}", name
        return f"no winner yet: {name} leads with {figures}", None

    def _wins(self, chance: Chance) -> bool:
        return chance.best >= self.win_probability and chance.expected_loss <= self.max_expected_loss

    @staticmethod
    def _leader(votes: Sequence[tuple[str, int, int]]) -> tuple[str, Chance]:
        chances = chances_to_be_best([(up, down) for _, up, down in votes])
        leader = max(range(len(votes)), key=lambda index: chances[index].best)
        return votes[leader][0], chances[leader]


HeadToHead = Mapping[str, tuple[int, int]]  # a variant's label → (wins, losses) between sibling drafts


def version_table(tallies: Sequence[VersionTally], rule: DecisionRule, head_to_head: HeadToHead | None = None,
                  verdict: str | None = None) -> list[str]:
    """Per version: drafts, 👍 rate with its interval, feedback per draft, speed, length, chance to be best;
    then the rule and its verdict. A Markdown table, for a terminal or a file. In an experiment, per variant,
    with its head-to-head wins, and the experiment's `verdict` (which counts its variants without drafts too)."""
    chances = _chances(tallies)
    columns = ["version" if head_to_head is None else "variant", "drafts", "rated", "👍 rate (Wilson 95 %)",
               "improvements / draft", "flags / draft", "median first token", "median tokens", "P(best)",
               "expected loss", *([] if head_to_head is None else ["head-to-head wins–losses"])]
    lines = ["| " + " | ".join(columns) + " |", "| --- |" + " ---: |" * (len(columns) - 1)]
    lines += ["| " + " | ".join(_cells(tally, chances.get(tally.version), head_to_head).values()) + " |"
              for tally in tallies]
    return [*lines, "", *_verdict(tallies, rule, verdict)]


def version_lines(tallies: Sequence[VersionTally], rule: DecisionRule, head_to_head: HeadToHead | None = None,
                  verdict: str | None = None) -> list[str]:
    """The same facts a line per version, for a chat message (a ten-column table wraps there)."""
    chances = _chances(tallies)
    lines = []
    for tally in tallies:
        cell = _cells(tally, chances.get(tally.version), head_to_head)
        lines.append(f"**{cell['version']}** — {cell['drafts']} drafts, {cell['rated']} rated · 👍 {cell['rate']} · "
                     f"{cell['improvements']} improvements and {cell['flags']} flags per draft · first token "
                     f"{cell['ttft']} · {cell['tokens']} tokens"
                     + (f" · P(best) {cell['best']}, expected loss {cell['loss']}" if tally.version in chances else "")
                     + (f" · head-to-head {cell['h2h']}" if "h2h" in cell else ""))
    return [*lines, *_verdict(tallies, rule, verdict)]


def _cells(tally: VersionTally, chance: Chance | None, head_to_head: HeadToHead | None) -> dict[str, str]:
    """One version's figures, formatted, in the table's column order."""
    wins = {} if head_to_head is None else {"h2h": "{}–{}".format(*head_to_head.get(tally.version, (0, 0)))}
    return {
        "version": tally.version, "drafts": str(tally.drafts), "rated": str(tally.rated),
        "rate": f"{Rate(tally.up, tally.up + tally.down).percent()} ({tally.up + tally.down} votes)",
        "improvements": f"{tally.improvements / tally.drafts:.2f}", "flags": f"{tally.flags / tally.drafts:.2f}",
        "ttft": _or_dash(tally.median_ttft_ms, "{:.0f} ms"), "tokens": _or_dash(tally.median_completion_tokens, "{:.0f}"),
        "best": f"{chance.best:.0%}" if chance else "—",
        "loss": f"{100 * chance.expected_loss:.1f} points" if chance else "—",
        **wins,
    }


def _chances(tallies: Sequence[VersionTally]) -> dict[str, Chance]:
    return chances_among({tally.version: (tally.up, tally.down) for tally in tallies})


def chances_among(votes: Mapping[str, tuple[int, int]], *, draws: int = 200_000) -> dict[str, Chance]:
    """Each named version's chance, among those with votes; none when fewer than two have any."""
    voted = [name for name, (up, down) in votes.items() if up + down]
    if len(voted) < 2:
        return {}
    chances = chances_to_be_best([votes[name] for name in voted], draws=draws)
    return dict(zip(voted, chances, strict=True))


def _verdict(tallies: Sequence[VersionTally], rule: DecisionRule, verdict: str | None) -> list[str]:
    return [rule.describe(), "verdict: " + (verdict or rule.verdict([(t.version, t.up, t.down) for t in tallies]))]


def stats_title(task: str | None, since: datetime | None) -> str:
    return f"copydesk · {task or 'every task'}" + (f" · since {since:%Y-%m-%d}" if since else "")


def _or_dash(value: float | None, shape: str) -> str:
    return shape.format(value) if value is not None else "—"
