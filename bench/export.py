"""Benchmark: exporting N stored drafts, to show that memory stays flat as N grows.

For each N, a fresh SQLite file is seeded by support/seeded_drafts.py (bulk inserts):
N finished drafts, a quarter of them regenerations, 0–3 ratings each, improvements on 5 %,
open flags on 1 % and moderator removals on 0.5 %, prompts shared between requests and some
answers repeated, so every part of the export (pairing, exclusions, deduplication, split,
Parquet) does its work. Then a fresh process runs the export exactly as `copydesk export` does
(DraftService.export, all four formats) and reports its time and its memory: the resident-set
high-water mark (ru_maxrss), and its growth over the same process just before the export began
(after imports and opening the database). The table on stdout gives both with ratios against the
smallest N; progress goes to stderr.

    .venv/bin/python bench/export.py                 # N = 10k and 100k (a few minutes on 2 cores)
    .venv/bin/python bench/export.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/export.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bot.config import PrivacySettings  # noqa: E402
from bot.service import DraftService, Policy  # noqa: E402
from storage import Repository, open_database  # noqa: E402
from support.seeded_drafts import seed  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def export_once(database: Path, out: Path) -> dict[str, Any]:
    """Run in its own process: the export as the CLI runs it, timed, with its memory high-water mark."""
    async def run() -> dict[str, Any]:
        db = await open_database(f"sqlite+aiosqlite:///{database}")
        service = DraftService(Repository(db), None, Policy(member_key=b"bench key",
                                                            privacy=PrivacySettings(training_consent_default=True)))
        await service.count_for_export()
        before = rss_mb()
        started = time.perf_counter()
        summary = await service.export(out)
        seconds = time.perf_counter() - started
        await db.close()
        return {"seconds": seconds, "rss_before_mb": before, "rss_peak_mb": rss_mb(), "drafts": summary.drafts,
                "rows": sum(summary.rows.values()), "duplicates": sum(summary.duplicates.values())}

    return asyncio.run(run())


def measure(size: int, folder: Path) -> dict[str, Any]:
    database = folder / f"bench-{size}.sqlite3"
    print(f"seeding {size} drafts…", file=sys.stderr, flush=True)
    started = time.perf_counter()
    seed(database, size)
    seeded = time.perf_counter() - started
    print(f"  seeded in {seeded:.0f} s; exporting…", file=sys.stderr, flush=True)
    result = subprocess.run([sys.executable, __file__, "--export-only", str(database), str(folder / f"out-{size}")],
                            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    measured = json.loads(result.stdout)
    print(f"  exported in {measured['seconds']:.0f} s", file=sys.stderr, flush=True)
    database.unlink()
    return {"size": size, "seed_seconds": seeded, **measured}


def table(results: Sequence[dict[str, Any]]) -> str:
    base = results[0]
    growth = max(base["rss_peak_mb"] - base["rss_before_mb"], 1.0)
    lines = ["| drafts stored | drafts exported | rows written | duplicates removed | export s | drafts/s | time × | "
             "peak RSS MB | growth during export MB | growth × |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        grew = r["rss_peak_mb"] - r["rss_before_mb"]
        lines.append(f"| {r['size']:,} | {r['drafts']:,} | {r['rows']:,} | {r['duplicates']:,} | {r['seconds']:.1f} | "
                     f"{r['drafts'] / r['seconds']:,.0f} | {r['seconds'] / base['seconds']:.1f}× | {r['rss_peak_mb']:.0f} | "
                     f"{grew:.0f} | {max(grew, 1.0) / growth:.2f}× |")
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError("sizes are positive integers, e.g. 10000,100000,1000000") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes are positive integers, e.g. 10000,100000,1000000")
    return sizes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[10_000, 100_000],
                        help="numbers of drafts, comma-separated (default 10000,100000; add 1000000 for the full run)")
    parser.add_argument("--export-only", nargs=2, metavar=("DATABASE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.export_only:
        print(json.dumps(export_once(Path(args.export_only[0]), Path(args.export_only[1]))))
        return
    with tempfile.TemporaryDirectory(prefix="copydesk-bench-") as folder:
        results = [measure(size, Path(folder)) for size in args.sizes]
    print(f"python {platform.python_version()} · {os.cpu_count()} CPUs · SQLite file · all four formats · "
          "RSS = resident set high-water mark of the exporting process\n")
    print(table(results))


if __name__ == "__main__":
    main()
