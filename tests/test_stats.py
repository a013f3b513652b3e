"""The statistics the team reads, against scipy's independent implementations, and the rule that decides."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from scipy.integrate import quad
from scipy.stats import beta, binomtest
from sqlalchemy import create_engine, insert

from bot.charts import SIZE_PX
from bot.stats import DecisionRule, Rate, chances_to_be_best, wilson_interval
from storage import Draft, Flag, Improvement, Rating, open_database
from test_cli import copydesk


@pytest.mark.parametrize(("hits", "total"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (41, 100), (1, 64),
                                             (63, 64), (500, 1000), (7, 2000)])
def test_the_wilson_interval_matches_scipy(hits: int, total: int) -> None:
    reference = binomtest(hits, total).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(hits, total) == pytest.approx((reference.low, reference.high), abs=1e-9)


def test_a_rate_reads_as_a_percentage_with_its_interval() -> None:
    assert Rate(41, 100).percent() == "41% [32–51]"
    assert Rate(0, 0).percent() == "0% [0–100]"


def reference_chances(votes: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """P(best) and expected loss by numerical integration over Beta(1 + 👍, 1 + 👎) densities (scipy)."""
    posteriors = [beta(1 + up, 1 + down) for up, down in votes]
    expected_max, _ = quad(lambda x: 1 - math.prod(p.cdf(x) for p in posteriors), 0, 1, limit=200)
    chances = []
    for index, posterior in enumerate(posteriors):
        others = [p for other, p in enumerate(posteriors) if other != index]
        best, _ = quad(lambda x: posterior.pdf(x) * math.prod(p.cdf(x) for p in others), 0, 1, limit=200)
        chances.append((best, expected_max - posterior.mean()))
    return chances


@pytest.mark.parametrize("votes", [[(50, 50), (60, 40)], [(0, 0), (0, 0)], [(3, 1), (30, 10)], [(90, 10), (10, 90)],
                                   [(40, 60), (45, 55), (50, 50)], [(120, 80), (118, 82), (121, 79), (2, 3)]])
def test_the_chance_to_be_best_and_its_expected_loss_match_an_integration(votes: list[tuple[int, int]]) -> None:
    for chance, (best, loss) in zip(chances_to_be_best(votes), reference_chances(votes), strict=True):
        assert chance.best == pytest.approx(best, abs=0.005)
        assert chance.expected_loss == pytest.approx(loss, abs=0.001)


RULE = DecisionRule(min_votes=100, win_probability=0.9, max_expected_loss=0.01)


def test_the_verdict_waits_for_enough_votes_on_every_version() -> None:
    assert RULE.verdict([("base", 80, 19), ("v2", 300, 10)]) == "not enough yet: 99 of 100 counted votes for base"
    assert RULE.verdict([("base", 50, 50)]) == "nothing to compare: one version has drafts"
    assert RULE.verdict([("base", 5, 5), ("v2", 10, 10), ("v3", 100, 0)]).startswith("not enough yet: 10 of 100 ")


def test_the_verdict_names_a_winner_only_past_both_thresholds() -> None:
    clear = RULE.verdict([("base", 50, 50), ("v2", 75, 25)])
    assert clear.startswith("v2 ahead: 100% probability to be best, expected loss 0.0 points"), clear
    close = [("base", 50, 50), ("v2", 60, 40)]  # v2: 92 % to be best, 0.3 points of expected loss
    assert RULE.verdict(close).startswith("v2 ahead: 92% probability")
    stricter = DecisionRule(min_votes=100, win_probability=0.95, max_expected_loss=0.01)
    assert stricter.verdict(close) == "no winner yet: v2 leads with 92% probability to be best, expected loss 0.3 points"
    tight = DecisionRule(min_votes=100, win_probability=0.9, max_expected_loss=0.002)
    assert tight.verdict(close) == "no winner yet: v2 leads with 92% probability to be best, expected loss 0.3 points"


def seed_two_versions(database: Path) -> None:
    """base: 110 finished ad drafts, one vote each (55 👍) and a member's 60 👍 more; v2: 110, 88 👍 of 110.
    Around them what the stats leave out: a removed and a failed draft, a blog draft for --task."""
    asyncio.run(migrate(database))
    engine = create_engine(f"sqlite:///{database}")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    drafts, ratings = [], []
    for index in range(220):
        version = "base" if index < 110 else "v2"
        drafts.append(draft_row(index + 1, version, start + timedelta(minutes=index), ttft_ms=300 if version == "base"
                                else 200, completion_tokens=50 if version == "base" else 40))
        up = index % 2 == 0 if version == "base" else (index - 110) % 5 != 0
        ratings.append({"draft_id": index + 1, "member_id": f"member-{index % 40}", "value": 1 if up else -1})
    ratings += [{"draft_id": draft_id, "member_id": "flood", "value": 1} for draft_id in range(1, 61)]
    drafts += [draft_row(221, "base", start, status="done", removed=True), draft_row(222, "v2", start, status="failed"),
               draft_row(223, "v2", start + timedelta(days=20), task="blog")]
    ratings += [{"draft_id": draft_id, "member_id": "member-0", "value": -1} for draft_id in (221, 222)]
    with engine.begin() as connection:
        connection.execute(insert(Draft), drafts)
        connection.execute(insert(Rating), ratings)
        connection.execute(insert(Improvement), [{"draft_id": draft_id, "member_id": "member-1", "text": "Better."}
                                                 for draft_id in range(111, 122)])
        connection.execute(insert(Flag), [{"draft_id": draft_id, "member_id": "member-2", "reason": "vague",
                                           "source": "member"} for draft_id in (1, 2)])
    engine.dispose()


async def migrate(database: Path) -> None:
    await (await open_database(f"sqlite+aiosqlite:///{database}")).close()


def draft_row(draft_id: int, version: str, created: datetime, *, status: str = "done", removed: bool = False,
              task: str = "ad", ttft_ms: int = 250, completion_tokens: int = 45) -> dict[str, object]:
    return {"id": draft_id, "task": task, "inputs": {}, "system_prompt": "s", "user_prompt": f"u{draft_id}",
            "template_version": f"{task}-v1", "model": "SmolLM2-135M-Instruct", "model_version": version,
            "quantization": "nf4", "sampling": {}, "output": "An ad.", "status": status, "ttft_ms": ttft_ms,
            "completion_tokens": completion_tokens, "author_id": "member-3", "created_at": created,
            "removed_at": created if removed else None}


def test_copydesk_stats_compares_the_versions_and_caps_a_members_flood_of_votes(tmp_path: Path,
                                                                                   cache_dir: Path) -> None:
    (tmp_path / "data").mkdir()
    seed_two_versions(tmp_path / "data" / "copydesk.sqlite3")
    shown = copydesk("stats", cwd=tmp_path, cache_dir=cache_dir)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ") for line in shown.stdout.splitlines()
            if line.startswith("| base ") or line.startswith("| v2 ")}
    # base: 55 of the 110 one-per-draft votes are 👍, and only 25 of "flood"'s 60 count (votes_per_member).
    base_low, base_high = binomtest(80, 135).proportion_ci(method="wilson")
    assert rows["base"][:4] == ["base", "110", "110", f"{80 / 135:.0%} [{100 * base_low:.0f}–{100 * base_high:.0f}] (135 votes)"]
    assert rows["base"][4:8] == ["0.00", "0.02", "300 ms", "50"]
    v2_low, v2_high = binomtest(88, 110).proportion_ci(method="wilson")
    # v2's 110 ads and its unrated blog draft: every task unless --task says which.
    assert rows["v2"][:8] == ["v2", "111", "110", f"{88 / 110:.0%} [{100 * v2_low:.0f}–{100 * v2_high:.0f}] (110 votes)",
                              "0.10", "0.00", "200 ms", "40"]
    (best, loss), _ = reference_chances([(88, 22), (80, 55)])
    assert rows["v2"][8:] == [f"{best:.0%}", f"{100 * loss:.1f} points"]
    assert shown.stdout.splitlines()[-1] == (f"verdict: v2 ahead: {best:.0%} probability to be best, expected loss "
                                            f"{100 * loss:.1f} points")
    assert "a member's first 25 per version" in shown.stdout

    only_blogs = copydesk("stats", "--task", "blog", "--since", "2026-11-15", "--chart", "charts/blog.png", cwd=tmp_path,
                          cache_dir=cache_dir)
    assert only_blogs.stdout.splitlines()[-1] == "chart: charts/blog.png"
    chart = Image.open(tmp_path / "charts" / "blog.png")
    chart.verify()
    assert (chart.format, chart.size) == ("PNG", SIZE_PX)
    assert [line for line in only_blogs.stdout.splitlines() if line.startswith("| v2 ")][0].startswith("| v2 | 1 | 0 |")
    assert only_blogs.stdout.splitlines()[-2] == "verdict: nothing to compare: one version has drafts"
    nothing = copydesk("stats", "--since", "2027-01-01", cwd=tmp_path, cache_dir=cache_dir)
    assert (nothing.returncode, nothing.stdout.strip()) == (0, "no finished drafts since then")
    wrong = copydesk("stats", "--since", "yesterday", cwd=tmp_path, cache_dir=cache_dir)
    assert wrong.returncode == 2 and "'yesterday' does not match the formats" in wrong.stderr
    (tmp_path / "charts" / "taken").mkdir()
    blocked = copydesk("stats", "--chart", "charts/taken", cwd=tmp_path, cache_dir=cache_dir)
    assert blocked.returncode == 2 and "'charts/taken' is a directory" in blocked.stderr, blocked.stderr
