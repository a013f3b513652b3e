"""The load scenario of bench/load.py (support/load_scenario.py), small: what must hold under load whatever the machine's speed.

No command vanishes, every stored draft ends in a final status, ratings count once per member
and draft. Timings are the benchmark's business: here the fake allows a generous response window.
"""

from __future__ import annotations

from generation import LocalEngine
from support import load_scenario


async def test_members_at_once_every_command_ends_and_ratings_count_once(engine: LocalEngine) -> None:
    args = load_scenario.parse_args(["--members", "6", "--commands", "14", "--clicks", "60", "--window", "6",
                                     "--max-new-tokens", "8", "--response-window", "60", "--drain", "400",
                                     "--burst", "40"])
    result = await load_scenario.run_load(args, engine)
    outcomes = result["outcomes"]
    assert sum(outcomes.values()) == 14 and outcomes["vanished"] == 0 and outcomes["error"] == 0, outcomes
    assert outcomes["completed"] > 0 and result["unanswered"] == 0
    assert set(result["statuses"]) <= {"done", "failed", "cancelled"}, result["statuses"]
    assert sum(result["statuses"].values()) == 14 - outcomes["refused"]
    assert result["thanked"] == result["clicks"] == 60
    assert result["ratings"] == result["pairs"] + result["burst"] and result["duplicate_ratings"] == 0
    assert result["burst"] == result["burst_thanked"] == result["burst_ratings"] == 40, "a burst counts each click once"
    assert result["burst_unanswered"] == result["burst_apologies"] == 0
