"""bench/load.py's scenario, small: what must hold under load whatever the machine's speed.

No command vanishes, every stored draft ends in a final status, ratings count once per member
and draft. Timings are the benchmark's business: here the fake allows a generous response window.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from generation import LocalEngine

BENCH = Path(__file__).resolve().parents[1] / "bench" / "load.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def test_members_at_once_every_command_ends_and_ratings_count_once(engine: LocalEngine) -> None:
    bench = load_bench()
    args = bench.parse_args(["--members", "6", "--commands", "14", "--clicks", "60", "--window", "6",
                             "--max-new-tokens", "8", "--response-window", "60", "--drain", "400"])
    result = await bench.run_load(args, engine)
    outcomes = result["outcomes"]
    assert sum(outcomes.values()) == 14 and outcomes["vanished"] == 0 and outcomes["error"] == 0, outcomes
    assert outcomes["completed"] > 0 and result["unanswered"] == 0
    assert set(result["statuses"]) <= {"done", "failed", "cancelled"}, result["statuses"]
    assert sum(result["statuses"].values()) == 14 - outcomes["refused"]
    assert result["thanked"] == result["clicks"] == 60
    assert result["ratings"] == result["pairs"] and result["duplicate_ratings"] == 0
