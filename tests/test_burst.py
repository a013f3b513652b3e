"""A burst of clicks against a real SQLite file: every one answered in time and counted once."""

from __future__ import annotations

import asyncio

from storage import Repository
from test_storage import new_draft

BURST = 500
ANSWERED_WITHIN_S = 25.0  # under the pool's 30 s checkout timeout, after which a member gets an apology


async def test_a_burst_of_ratings_is_stored_once_each_in_time_and_leaves_reads_a_connection(
    repository: Repository,
) -> None:
    draft = await new_draft(repository)
    burst = asyncio.gather(
        *(repository.rate(draft.id, f"member-{i}", 1 if i % 3 else -1) for i in range(BURST)),
        return_exceptions=True,
    )
    await asyncio.sleep(0.2)  # every click of the burst is now waiting to write
    # A read asked for mid-burst (another member's click, the status view) is answered at once, not
    # after the writers ahead of it: writers waiting for SQLite's one write lock hold no connection.
    ups_seen, downs_seen = await asyncio.wait_for(repository.rating_summary(draft.id), ANSWERED_WITHIN_S)

    results = await asyncio.wait_for(burst, ANSWERED_WITHIN_S)

    failures = [result for result in results if isinstance(result, BaseException)]
    assert failures == [], f"{len(failures)} of {BURST} clicks failed, the first: {failures[0]!r}"
    ups = sum(1 for i in range(BURST) if i % 3)
    assert await repository.rating_summary(draft.id) == (ups, BURST - ups)
    assert ups_seen + downs_seen < BURST / 2, "the read waited for most of the burst"
