"""Benchmark: attention of decoding steps on the CPU, SDPA against `one_query_attention`.

The embedded model's shapes (9 query heads over 3 key/value heads of 64, bf16), one layer:

- one draft decoding alone, one query over all its keys: SDPA (`enable_gqa`) against
  `one_query_attention`, timed as the engine times them at start to take the faster
  (`time_one_query`, there at 300 keys);
- several drafts decoding in one step, each over its own keys: one masked SDPA call over the
  packed keys, as the engine does it, against one `one_query_attention` per draft.

Median time per call, in µs; the ratio is SDPA's time over the other's. Takes a few seconds.

    .venv/bin/python bench/decode_attention.py [--repeats 500]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/decode_attention.py` from anywhere
    sys.path.insert(0, str(ROOT))

from generation.varlen_attention import one_query_attention, time_one_query  # noqa: E402

HEADS, KV_HEADS, DIM = 9, 3, 64
SCALE = DIM ** -0.5
KEY_LENGTHS = (64, 150, 300, 600, 1200, 2048)
DRAFTS = (2, 4, 16)
KEYS_PER_DRAFT = 300


def median_us(call: Callable[[], object], repeats: int) -> float:
    for _ in range(20):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def one_draft_row(keys: int, repeats: int) -> list[str]:
    """The engine's own timing at start (generation.varlen_attention.time_one_query), at more lengths."""
    timing = time_one_query(HEADS, KV_HEADS, DIM, torch.bfloat16, keys, repeats)
    sdpa, ours = timing.sdpa_us, timing.one_query_us
    return [f"1 draft, {keys} keys", f"{sdpa:.0f}", f"{ours:.0f}", f"{sdpa / ours:.2f}×"]


def drafts_row(drafts: int, repeats: int) -> list[str]:
    total = drafts * KEYS_PER_DRAFT
    query = torch.randn(1, HEADS, drafts, DIM, dtype=torch.bfloat16)
    key, value = (torch.randn(1, KV_HEADS, total, DIM, dtype=torch.bfloat16) for _ in range(2))
    starts = torch.arange(drafts) * KEYS_PER_DRAFT
    positions = torch.arange(total)
    own_keys = (positions >= starts[:, None]) & (positions < starts[:, None] + KEYS_PER_DRAFT)
    spans = [(i, slice(i * KEYS_PER_DRAFT, (i + 1) * KEYS_PER_DRAFT)) for i in range(drafts)]

    def per_draft() -> None:
        for row, keys in spans:
            one_query_attention(query[:, :, row:row + 1], key[:, :, keys], value[:, :, keys], SCALE)

    sdpa = median_us(lambda: F.scaled_dot_product_attention(
        query, key, value, attn_mask=own_keys, scale=SCALE, enable_gqa=True), repeats)
    ours = median_us(per_draft, repeats)
    return [f"{drafts} drafts, {KEYS_PER_DRAFT} keys each", f"{sdpa:.0f}", f"{ours:.0f}", f"{sdpa / ours:.2f}×"]


def render(rows: Sequence[Sequence[str]]) -> str:
    lines = [
        f"One attention layer of the embedded model (bf16, {HEADS} heads over {KV_HEADS}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads on {os.cpu_count()} cores.",
        "",
        "| decoding step | SDPA µs | one_query_attention µs | SDPA ÷ ours |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=500, help="timed calls per row (default 500)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with torch.inference_mode():
        rows = [one_draft_row(keys, args.repeats) for keys in KEY_LENGTHS]
        rows += [drafts_row(drafts, args.repeats) for drafts in DRAFTS]
    print(render(rows))


if __name__ == "__main__":
    main()
