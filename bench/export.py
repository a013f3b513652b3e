"""Benchmark: exporting N stored drafts, to show that memory stays flat as N grows.

For each N, a fresh SQLite file is seeded with bulk inserts (SQLAlchemy Core executemany):
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
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/export.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bot.config import PrivacySettings  # noqa: E402
from bot.service import DraftService, Policy  # noqa: E402
from storage import Consent, Draft, Flag, Improvement, Rating, Repository, open_database  # noqa: E402

CHUNK = 20_000  # rows per executemany while seeding
WORDS = ("bright light quiet warm trail camp night morning coffee oat milk foams dream rain boots dry socks puddle "
         "lantern solar charge hike river stars bold fresh crisp handmade local tasty simple clever durable").split()
MEMBERS = 200


def seed(database: Path, drafts: int) -> None:
    """Create the schema, then bulk-insert `drafts` drafts with their feedback, deterministically."""
    async def migrate() -> None:
        await (await open_database(f"sqlite+aiosqlite:///{database}")).close()

    asyncio.run(migrate())
    engine = create_engine(f"sqlite:///{database}")
    rng = random.Random(drafts)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(insert(Consent), [{"member_id": f"member-{m}", "granted": True, "updated_at": start}
                                             for m in range(MEMBERS)])
        for chunk in _chunks(_drafts(rng, drafts, start), CHUNK):
            connection.execute(insert(Draft), [row for row, _ in chunk])
            feedback = [item for _, items in chunk for item in items]
            for model in (Rating, Improvement, Flag):
                rows = [values for kind, values in feedback if kind is model]
                if rows:
                    connection.execute(insert(model), rows)
    engine.dispose()


def _drafts(rng: random.Random, count: int, start: datetime) -> Iterator[tuple[dict[str, Any], list[tuple[Any, dict]]]]:
    last_original, last_user, last_output = 0, "", ""
    for draft_id in range(1, count + 1):
        regeneration = last_original and rng.random() < 0.25
        if regeneration:
            user = last_user
        else:
            user = f"Write an ad for {rng.choice(WORDS)} {rng.choice(WORDS)} number {rng.randrange(count // 3 + 1)}."
        output = last_output if rng.random() < 0.03 else " ".join(rng.choices(WORDS, k=rng.randint(20, 60))).capitalize()
        created = start + timedelta(seconds=draft_id * 7)
        row = {"id": draft_id, "parent_id": last_original if regeneration else None, "task": "ad",
               "inputs": {"product": user[16:40], "audience": "campers", "tone": "friendly"},
               "system_prompt": "You write short, vivid ads.", "user_prompt": user, "template_version": "ad-v1",
               "model": "SmolLM2-135M-Instruct", "quantization": "nf4",
               "sampling": {"max_new_tokens": 96, "temperature": 0.8, "top_p": 0.9, "top_k": 50}, "seed": 0,
               "output": output, "status": "done", "prompt_tokens": 30, "completion_tokens": 60, "latency_ms": 2000,
               "ttft_ms": 300, "author_id": f"member-{rng.randrange(MEMBERS)}", "guild_id": "1", "channel_id": "2",
               "created_at": created, "started_at": created, "finished_at": created,
               "removed_at": created if rng.random() < 0.005 else None}
        feedback: list[tuple[Any, dict]] = [
            (Rating, {"draft_id": draft_id, "member_id": f"member-{rater}", "value": rng.choice((1, 1, -1)),
                      "created_at": created, "updated_at": created})
            for rater in rng.sample(range(MEMBERS), rng.randint(0, 3))]
        if rng.random() < 0.05:
            feedback.append((Improvement, {"draft_id": draft_id, "member_id": f"member-{rng.randrange(MEMBERS)}",
                                           "text": output.replace(" ", " really ", 2) + " Try it today.",
                                           "created_at": created}))
        if rng.random() < 0.01:
            feedback.append((Flag, {"draft_id": draft_id, "member_id": None, "reason": "bench", "source": "auto",
                                    "status": "open", "created_at": created}))
        if not regeneration:
            last_original, last_user = draft_id, user
        last_output = output
        yield row, feedback


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
