"""The statistics the team reads, against scipy's independent implementation."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from bot.stats import Rate, wilson_interval


@pytest.mark.parametrize(("hits", "total"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (41, 100), (1, 64),
                                             (63, 64), (500, 1000), (7, 2000)])
def test_the_wilson_interval_matches_scipy(hits: int, total: int) -> None:
    reference = binomtest(hits, total).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(hits, total) == pytest.approx((reference.low, reference.high), abs=1e-9)


def test_a_rate_reads_as_a_percentage_with_its_interval() -> None:
    assert Rate(41, 100).percent() == "41% [32–51]"
    assert Rate(0, 0).percent() == "0% [0–100]"
