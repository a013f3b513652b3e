"""A training dataset in a folder: one JSON Lines file per format and split, raw also as Parquet,
and a dataset card (README.md) that says what is in it and how the rows were chosen.

The writer is fed records in request order, batch by batch, and keeps only the current request,
open file handles, one Parquet batch, a fixed-size duplicate filter per format and counters keyed
by task, model and label: memory does not grow with the number of rows.

Hygiene, in this order, for the training formats (sft, dpo, kto): rows that repeat a kept row
exactly or nearly (storage.dedup) are dropped; every row goes to `test` or `train` by a hash of
its normalized prompt, so one prompt — asked once or by many members — never lands in both.
`raw` keeps every selected draft (it is for analysis) and is split the same way.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.card import dataset_card
from storage.dedup import DEFAULT_BLOOM_BITS, Deduplicator, Duplicate, digest, normalize
from storage.export import EXPORT_FORMATS, RequestGroups, Row, RowRules, check_format, group_rows
from storage.feedback import FeedbackFilter, FeedbackRecord

SPLITS = ("train", "test")
CARD = "README.md"
PARQUET_BATCH_ROWS = 2000
SPLIT_SALT = "copydesk-split-v1"

RAW_SCHEMA = pa.schema([
    ("id", pa.int64()), ("parent_id", pa.int64()), ("task", pa.string()),
    ("inputs", pa.map_(pa.string(), pa.string())), ("system_prompt", pa.string()), ("user_prompt", pa.string()),
    ("output", pa.string()), ("template_version", pa.string()), ("model", pa.string()), ("quantization", pa.string()),
    ("sampling", pa.map_(pa.string(), pa.float64())), ("seed", pa.int64()), ("created_at", pa.timestamp("us", tz="UTC")),
    ("ups", pa.int64()), ("downs", pa.int64()), ("improvements", pa.list_(pa.string())), ("author", pa.string()),
])


@dataclass(frozen=True, slots=True)
class DatasetOptions:
    formats: tuple[str, ...] = EXPORT_FORMATS
    rules: RowRules = RowRules()
    test_fraction: float = 0.1
    deduplicate: bool = True
    dedup_bits: int = DEFAULT_BLOOM_BITS

    def __post_init__(self) -> None:
        for export_format in self.formats:
            check_format(export_format)
        if not self.formats:
            raise ValueError("choose at least one export format")
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"the test fraction is between 0 and 1 (got {self.test_fraction})")
        if self.rules.min_votes < 0:
            raise ValueError(f"the minimum number of votes cannot be negative (got {self.rules.min_votes})")


def file_name(export_format: str, split: str, suffix: str = "jsonl") -> str:
    return f"{export_format}-{split}.{suffix}"


def split_of(system_prompt: str, user_prompt: str, test_fraction: float) -> str:
    """`test` for a fixed share of prompts, chosen by a hash of the normalized prompt."""
    position = int.from_bytes(digest(SPLIT_SALT, normalize(system_prompt), normalize(user_prompt))[:8], "big")
    return "test" if position < test_fraction * 2**64 else "train"


@dataclass
class DatasetSummary:
    """What an export wrote: counts by file, format, task and label, and what hygiene removed."""

    folder: Path
    options: DatasetOptions
    filters: dict[str, Any]
    drafts: int = 0  # drafts read that passed the exclusions
    rows: Counter[tuple[str, str]] = field(default_factory=Counter)  # (format, split) → rows
    labels: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (format, task, label) → rows
    duplicates: Counter[tuple[str, str]] = field(default_factory=Counter)  # (format, exact|near) → rows dropped
    models: Counter[str] = field(default_factory=Counter)  # "model (quantization)" → drafts
    template_versions: Counter[str] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None
    false_positive_rates: dict[str, float] = field(default_factory=dict)

    def count(self, export_format: str, split: str | None = None) -> int:
        return sum(n for (fmt, sp), n in self.rows.items() if fmt == export_format and split in (None, sp))

    def kto_balance(self) -> tuple[int, int]:
        """(good, bad) KTO rows, for weighting the classes."""
        good = sum(n for (fmt, _, label), n in self.labels.items() if fmt == "kto" and label == "good")
        bad = sum(n for (fmt, _, label), n in self.labels.items() if fmt == "kto" and label == "bad")
        return good, bad

    def lines(self) -> list[str]:
        """A short report for a terminal or a chat message."""
        lines = []
        for fmt in self.options.formats:
            lines.append(f"{fmt}: {self.count(fmt)} rows ({self.count(fmt, 'train')} train, {self.count(fmt, 'test')} test)")
        if "kto" in self.options.formats:
            good, bad = self.kto_balance()
            lines.append(f"kto labels: {good} good, {bad} bad")
        exact = sum(n for (_, kind), n in self.duplicates.items() if kind == Duplicate.EXACT)
        near = sum(n for (_, kind), n in self.duplicates.items() if kind == Duplicate.NEAR)
        lines.append(f"duplicates removed: {exact} exact, {near} near-exact; {self.drafts} drafts read")
        return lines


class DatasetWriter:
    """Writes one export folder; feed it records in request order, then close it."""

    def __init__(self, folder: Path, options: DatasetOptions = DatasetOptions(),
                 filters: FeedbackFilter = FeedbackFilter()) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.summary = DatasetSummary(folder, options, filters.describe())
        self._options = options
        self._groups = RequestGroups()
        self._dedup = {fmt: Deduplicator(options.dedup_bits) for fmt in options.formats
                       if fmt != "raw" and options.deduplicate}
        self._files: dict[tuple[str, str], IO[str]] = {
            (fmt, split): (folder / file_name(fmt, split)).open("w", encoding="utf-8")
            for fmt in options.formats for split in SPLITS}
        self._parquet: dict[str, tuple[pq.ParquetWriter, list[dict[str, Any]]]] = {}
        if "raw" in options.formats:
            self._parquet = {split: (pq.ParquetWriter(folder / file_name("raw", split, "parquet"), RAW_SCHEMA), [])
                             for split in SPLITS}

    def feed(self, records: Iterable[FeedbackRecord]) -> None:
        for record in records:
            if (group := self._groups.add(record)) is not None:
                self._write_group(group)

    def close(self) -> DatasetSummary:
        """Write what is left, the Parquet footers and the dataset card."""
        if (group := self._groups.finish()) is not None:
            self._write_group(group)
        for split in self._parquet:
            self._flush_parquet(split)
        self.abandon()
        self.summary.false_positive_rates = {fmt: dedup.false_positive_rate() for fmt, dedup in self._dedup.items()}
        (self.summary.folder / CARD).write_text(dataset_card(self.summary), encoding="utf-8")
        return self.summary

    def abandon(self) -> None:
        """Close every file as it is (after a failure, the card is not written)."""
        for handle in self._files.values():
            handle.close()
        for writer, _ in self._parquet.values():
            writer.close()

    def _write_group(self, group: list[FeedbackRecord]) -> None:
        summary = self.summary
        for record in group:
            summary.drafts += 1
            summary.models[f"{record.model} ({record.quantization})"] += 1
            summary.template_versions[record.template_version] += 1
            summary.first = min(summary.first or record.created_at, record.created_at)
            summary.last = max(summary.last or record.created_at, record.created_at)
        for fmt in self._options.formats:
            for row in group_rows(group, fmt, self._options.rules):
                self._write_row(fmt, row)

    def _write_row(self, fmt: str, row: Row) -> None:
        system, user = _prompt_of(fmt, row)
        if fmt in self._dedup:
            duplicate = self._dedup[fmt].check(system + "\n" + user, _answers_of(fmt, row))
            if duplicate is not None:
                self.summary.duplicates[fmt, duplicate] += 1
                return
        split = split_of(system, user, self._options.test_fraction)
        self._files[fmt, split].write(json.dumps(row, ensure_ascii=False) + "\n")
        self.summary.rows[fmt, split] += 1
        task = row["task"] if fmt == "raw" else row["metadata"]["task"]
        self.summary.labels[fmt, task, _label_of(fmt, row)] += 1
        if fmt == "raw":
            writer, pending = self._parquet[split]
            pending.append({**row, "created_at": datetime.fromisoformat(row["created_at"]),
                            "sampling": {name: float(value) for name, value in row["sampling"].items()}})
            if len(pending) >= PARQUET_BATCH_ROWS:
                self._flush_parquet(split)

    def _flush_parquet(self, split: str) -> None:
        writer, pending = self._parquet[split]
        if pending:
            writer.write_table(pa.Table.from_pylist(pending, schema=RAW_SCHEMA))
            pending.clear()


def _prompt_of(fmt: str, row: Row) -> tuple[str, str]:
    if fmt == "raw":
        return row["system_prompt"], row["user_prompt"]
    messages = row["messages"][:2] if fmt == "sft" else row["prompt"]
    return messages[0]["content"], messages[1]["content"]


def _answers_of(fmt: str, row: Row) -> list[str]:
    if fmt == "sft":
        return [row["messages"][2]["content"]]
    if fmt == "dpo":
        return [row["chosen"][0]["content"], row["rejected"][0]["content"]]
    return [row["completion"][0]["content"]]


def _label_of(fmt: str, row: Row) -> str:
    if fmt == "kto":
        return "good" if row["label"] else "bad"
    if fmt == "raw":
        return "rated" if row["ups"] + row["downs"] else "unrated"
    return row["metadata"]["source"]
