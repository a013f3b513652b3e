"""The stats chart: 👍 rate over time per model version with its interval, the probability that each is
best over time, and drafts per period by task — one PNG, readable at Discord's preview size. The period
is a day, or shorter for an experiment that ran for hours (its chart would otherwise be one point).

Rendered with matplotlib's object API on the Agg canvas (no pyplot state), so it is safe in a worker
thread; callers on the event loop run it with asyncio.to_thread.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from bot.stats import Rate, chances_among
from storage import DraftVotes

SIZE_PX = (1000, 1050)  # Discord shows it about half as wide: fonts and lines are sized for that
DPI = 100
FONT_PT = 17
CHART_DRAWS = 50_000  # per period and version; the curve needs less precision than the verdict
PERIODS = ((timedelta(minutes=1), "minute"), (timedelta(minutes=5), "5 min"), (timedelta(minutes=15), "15 min"),
           (timedelta(hours=1), "hour"), (timedelta(hours=6), "6 h"), (timedelta(days=1), "day"))
MOST_PERIODS = 40  # the shortest period giving at most this many points; a day at least once the span is longer


def stats_chart(drafts: Sequence[DraftVotes], title: str, win_probability: float) -> bytes:
    """The three panels as a PNG; `drafts` oldest first (VersionStatsRepository.draft_votes), the
    decision rule's `win_probability` drawn as a line."""
    period, period_name = _period(drafts)
    days = sorted({_start(draft.created_at, period) for draft in drafts})
    versions = list(dict.fromkeys(draft.version for draft in drafts))
    cumulative = _cumulative_votes(drafts, days, period, versions)
    figure = Figure(figsize=(SIZE_PX[0] / DPI, SIZE_PX[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize=FONT_PT + 3)
    rate_axes, best_axes, volume_axes = figure.subplots(3, 1, sharex=True, height_ratios=(3, 2, 2))

    for version in versions:
        points = [(day, Rate(up, up + down)) for day, (up, down) in zip(days, cumulative[version], strict=True)
                  if up + down]
        if not points:
            continue
        x = [day for day, _ in points]
        line, = rate_axes.plot(x, [100 * rate.share for _, rate in points], marker="o", linewidth=3, label=version)
        rate_axes.fill_between(x, [100 * rate.interval[0] for _, rate in points],
                               [100 * rate.interval[1] for _, rate in points], color=line.get_color(), alpha=0.2)
    rate_axes.set_ylabel("thumbs-up %\n(95 % band)", fontsize=FONT_PT)  # DejaVu has no 👍
    rate_axes.set_ylim(0, 100)

    chances = [_best_on(day_index, cumulative, versions) for day_index in range(len(days))]
    for version in versions:
        best_axes.plot(days, [100 * chance[version] if version in chance else float("nan") for chance in chances],
                       linewidth=3, label=version)
    best_axes.axhline(100 * win_probability, color="grey", linestyle="--", linewidth=1.5,
                      label=f"a win: {win_probability:.0%}")
    best_axes.set_ylabel("P(best) %", fontsize=FONT_PT)
    best_axes.set_ylim(0, 100)

    tasks = list(dict.fromkeys(draft.task for draft in drafts))
    per_day = Counter((_start(draft.created_at, period), draft.task) for draft in drafts)
    bottom = [0] * len(days)
    for task in tasks:
        heights = [per_day[(day, task)] for day in days]
        volume_axes.bar(days, heights, bottom=bottom, label=task, width=0.8 * period, align="edge")
        bottom = [below + height for below, height in zip(bottom, heights, strict=True)]
    volume_axes.set_ylabel(f"drafts / {period_name}", fontsize=FONT_PT)

    locator = AutoDateLocator(maxticks=8)
    volume_axes.xaxis.set_major_locator(locator)
    volume_axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    for axes in (rate_axes, best_axes, volume_axes):
        axes.tick_params(labelsize=FONT_PT - 2)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=FONT_PT - 2, loc="lower left", ncols=4, framealpha=0.9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _period(drafts: Sequence[DraftVotes]) -> tuple[timedelta, str]:
    span = drafts[-1].created_at - drafts[0].created_at if drafts else timedelta()
    return next(((length, name) for length, name in PERIODS if span / length <= MOST_PERIODS), PERIODS[-1])


def _start(moment: datetime, period: timedelta) -> datetime:
    """The start of the period holding `moment` (periods are counted from midnight UTC)."""
    moment = moment.astimezone(UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + (moment - midnight) // period * period


def _cumulative_votes(drafts: Sequence[DraftVotes], days: list[datetime], period: timedelta,
                      versions: list[str]) -> dict[str, list[tuple[int, int]]]:
    """Per version, its (👍, 👎) counted up to the end of each period."""
    daily: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0])
    for draft in drafts:
        tally = daily[(draft.version, _start(draft.created_at, period))]
        tally[0] += draft.up
        tally[1] += draft.down
    cumulative: dict[str, list[tuple[int, int]]] = {}
    for version in versions:
        up = down = 0
        cumulative[version] = []
        for day in days:
            up, down = up + daily[(version, day)][0], down + daily[(version, day)][1]
            cumulative[version].append((up, down))
    return cumulative


def _best_on(day_index: int, cumulative: dict[str, list[tuple[int, int]]], versions: list[str]) -> dict[str, float]:
    """Each version's probability to be best by the end of that period, among those with votes by then."""
    chances = chances_among({version: cumulative[version][day_index] for version in versions}, draws=CHART_DRAWS)
    return {version: chance.best for version, chance in chances.items()}
