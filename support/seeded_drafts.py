"""Many stored drafts with their feedback, bulk-inserted deterministically: for the export bench and
the tests that need an export to take a while.

N finished drafts, a quarter of them regenerations, 0–3 ratings each, improvements on 5 %, open flags
on 1 % and moderator removals on 0.5 %, prompts shared between requests and some answers repeated,
so every part of an export (pairing, exclusions, deduplication, split, Parquet) does its work.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert

from storage import Consent, Draft, Flag, Improvement, Rating, open_database

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
