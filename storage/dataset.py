"""A training dataset in a folder: one JSON Lines file per format and split, raw also as Parquet,
and a dataset card (README.md) that says what is in it and how the rows were chosen.

The writer is fed records in request order, batch by batch, and keeps only the current request,
open file handles, one Parquet batch, a fixed-size duplicate filter per format and counters keyed
by task, model and label: memory does not grow with the number of rows.

Hygiene, in this order, for the training formats (sft, dpo, kto): rows that repeat a kept row
exactly or nearly (storage.dedup) are dropped; every row goes to `test` or `train` by a hash of
its normalized prompt, so one prompt — asked once or by many members — never lands in both.
`raw` keeps every selected draft (it is for analysis) and is split the same way. What each format
makes of a draft, and which files it writes, is its object in storage.export's registry.

The folder appears whole or not at all (storage.atomic): it is written beside its destination and
put in place with the card last, and the card lists every file with its row count and sha256.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import StagedFolder
from storage.card import DatasetCard
from storage.dedup import DEFAULT_BLOOM_BITS, Deduplicator, Duplicate, digest, normalize
from storage.exclusions import Exclusions
from storage.export import EXPORT_FORMATS, FORMATS, RequestGroups, Row, RowRules, get_format
from storage.feedback import FeedbackFilter, FeedbackRecord

SPLITS = ("train", "test")
PARQUET_BATCH_ROWS = 2000
SPLIT_SALT = "copydesk-split-v1"


@dataclass(frozen=True, slots=True)
class DatasetOptions:
    formats: tuple[str, ...] = EXPORT_FORMATS
    rules: RowRules = RowRules()
    test_fraction: float = 0.1
    deduplicate: bool = True
    dedup_bits: int = DEFAULT_BLOOM_BITS

    def __post_init__(self) -> None:
        for export_format in self.formats:
            get_format(export_format)
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
    exclusions: Exclusions | None = None  # drafts each rule left out
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

    def balance(self, export_format: str) -> tuple[int, int]:
        """(desirable, undesirable) rows of a format with two classes, for weighting them."""
        classes = FORMATS[export_format].classes
        assert classes is not None, f"{export_format} rows have no classes"
        return (sum(n for (fmt, _, label), n in self.labels.items() if fmt == export_format and label == classes[0]),
                sum(n for (fmt, _, label), n in self.labels.items() if fmt == export_format and label == classes[1]))

    def lines(self) -> list[str]:
        """A short report for a terminal or a chat message."""
        lines = []
        for fmt in self.options.formats:
            lines.append(f"{fmt}: {self.count(fmt)} rows ({self.count(fmt, 'train')} train, {self.count(fmt, 'test')} test)")
        for fmt in self.options.formats:
            if (classes := FORMATS[fmt].classes) is not None:
                desirable, undesirable = self.balance(fmt)
                lines.append(f"{fmt} labels: {desirable} {classes[0]}, {undesirable} {classes[1]}")
        exact = sum(n for (_, kind), n in self.duplicates.items() if kind == Duplicate.EXACT)
        near = sum(n for (_, kind), n in self.duplicates.items() if kind == Duplicate.NEAR)
        lines.append(f"duplicates removed: {exact} exact, {near} near-exact; {self.drafts} drafts read")
        if self.exclusions is not None:
            lines.append(self.exclusions.line())
        return lines


class DatasetWriter:
    """Writes one export folder; feed it records in request order, then close it.

    The files are written into a temporary folder beside `folder` (storage.atomic), which takes the
    place of `folder` only once every file and the card are complete: a failed or killed export leaves
    the previous export in `folder` as it was, and nothing half-written under its name.
    """

    def __init__(self, folder: Path, options: DatasetOptions = DatasetOptions(),
                 filters: FeedbackFilter = FeedbackFilter()) -> None:
        self._staged = StagedFolder(folder)
        staging = self._staged.path
        self.summary = DatasetSummary(folder, options, filters.describe())
        self._options = options
        self._groups = RequestGroups()
        self._dedup = {fmt: Deduplicator(options.dedup_bits) for fmt in options.formats
                       if FORMATS[fmt].training and options.deduplicate}
        self._files: dict[tuple[str, str], IO[str]] = {
            (fmt, split): (staging / file_name(fmt, split)).open("w", encoding="utf-8")
            for fmt in options.formats if not FORMATS[fmt].csv_columns for split in SPLITS}
        self._tables: dict[tuple[str, str], tuple[IO[str], Any]] = {}
        for fmt in options.formats:
            for table, columns in FORMATS[fmt].csv_columns.items():
                handle = (staging / f"{fmt}-{table}.csv").open("w", encoding="utf-8", newline="")
                self._tables[fmt, table] = (handle, csv.DictWriter(handle, columns))
                self._tables[fmt, table][1].writeheader()
        self._parquet: dict[tuple[str, str], tuple[pq.ParquetWriter, list[dict[str, Any]]]] = {
            (fmt, split): (pq.ParquetWriter(staging / file_name(fmt, split, "parquet"), schema), [])
            for fmt in options.formats if (schema := FORMATS[fmt].parquet_schema) is not None for split in SPLITS}

    def feed(self, records: Iterable[FeedbackRecord]) -> None:
        for record in records:
            if (group := self._groups.add(record)) is not None:
                self._write_group(group)

    def close(self, exclusions: Exclusions | None = None) -> DatasetSummary:
        """Write what is left, the Parquet footers and the dataset card (last), and put the folder in place."""
        try:
            if (group := self._groups.finish()) is not None:
                self._write_group(group)
            for key in self._parquet:
                self._flush_parquet(key)
            self._close_files()
            summary = self.summary
            summary.exclusions = exclusions
            summary.false_positive_rates = {fmt: dedup.false_positive_rate() for fmt, dedup in self._dedup.items()}
            rows = {file_name(fmt, split, suffix): summary.count(fmt, split)
                    for fmt in self._options.formats for split in SPLITS for suffix in FORMATS[fmt].suffixes}
            rows |= {f"{fmt}-{table}.csv": summary.count(fmt, table) for fmt, table in self._tables}
            self._staged.commit(DatasetCard(summary), rows)
        except BaseException:
            self.abandon()
            raise
        return summary

    def abandon(self) -> None:
        """After a failure: close every file and remove the unfinished folder; `folder` keeps what it held."""
        self._close_files()
        self._staged.discard()

    def _close_files(self) -> None:
        for handle in (*self._files.values(), *(handle for handle, _ in self._tables.values())):
            handle.close()
        for writer, _ in self._parquet.values():
            if writer.is_open:
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
            for row in FORMATS[fmt].rows(group, self._options.rules):
                self._write_row(fmt, row)

    def _write_row(self, fmt: str, row: Row) -> None:
        shape = FORMATS[fmt]
        if shape.csv_columns:  # a table for an upload, not a dataset: no split, no duplicate check
            table = shape.table(row)
            self._tables[fmt, table][1].writerow(row["columns"])
            self.summary.rows[fmt, table] += 1
            self.summary.labels[fmt, shape.task(row), shape.label(row)] += 1
            return
        system, user = shape.prompt(row)
        if fmt in self._dedup:
            duplicate = self._dedup[fmt].check(system + "\n" + user, shape.answers(row))
            if duplicate is not None:
                self.summary.duplicates[fmt, duplicate] += 1
                return
        split = split_of(system, user, self._options.test_fraction)
        self._files[fmt, split].write(json.dumps(row, ensure_ascii=False) + "\n")
        self.summary.rows[fmt, split] += 1
        self.summary.labels[fmt, shape.task(row), shape.label(row)] += 1
        if (fmt, split) in self._parquet:
            _, pending = self._parquet[fmt, split]
            pending.append(shape.parquet_record(row))
            if len(pending) >= PARQUET_BATCH_ROWS:
                self._flush_parquet((fmt, split))

    def _flush_parquet(self, key: tuple[str, str]) -> None:
        writer, pending = self._parquet[key]
        if pending:
            writer.write_table(pa.Table.from_pylist(pending, schema=writer.schema))
            pending.clear()
