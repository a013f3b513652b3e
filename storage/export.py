"""Turning stored feedback into training rows: one object per export format, in one registry.

A format says everything the rest of the export needs of it: which drafts it takes (one record, or
the drafts of one request together), the shape of its rows, the prompt, answers and label of a row
(for duplicate checks, the split, and the counts by label), whether it is deduplicated, which files
it writes, and its lines in the dataset card. Adding a format is adding one class here with
`@register`; the command-line and Discord help texts, the dataset writer and the card read the registry.

Rows are produced while streaming: drafts arrive grouped by request, so pairs between
regenerations of one request are formed from one group at a time and memory stays flat.
Rows never carry member ids (at most the author's keyed pseudonym, when the export has a key);
each carries its provenance in `metadata`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, ClassVar

import pyarrow as pa

from storage.feedback import FeedbackRecord

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RowRules:
    """Which ratings count: a draft's mean rating (−1…1) must reach `threshold` for SFT, and a rating
    counts only with at least `min_votes` votes behind it (improvements need none)."""

    threshold: float = 0.5
    min_votes: int = 1

    def rated(self, record: FeedbackRecord) -> bool:
        return record.votes >= max(1, self.min_votes)


class ExportFormat:
    """One export format. Subclasses set the class attributes and override `rows` (a request's drafts
    together) or `record_rows` (one draft at a time), and the accessors their row shape needs."""

    name: ClassVar[str]
    help: ClassVar[str]  # a few words for the command-line and Discord help
    row_shape: ClassVar[str]  # the row as the dataset card shows it
    how_chosen: ClassVar[str]  # the card's bullet on which drafts become rows
    training: ClassVar[bool] = True  # deduplicated and tagged in the card; an analysis format keeps every row
    parquet_schema: ClassVar[pa.Schema | None] = None  # also written as Parquet, with this schema
    classes: ClassVar[tuple[str, str] | None] = None  # (desirable, undesirable) labels, whose balance the card gives
    trainer_config: ClassVar[str] = ""  # the TRL config whose class weights `classes` call for
    # A CSV format writes one file per table, `<name>-<table>.csv` with these columns, instead of JSON
    # Lines per split; it is written only when asked for by name.
    csv_columns: ClassVar[dict[str, tuple[str, ...]]] = {}

    @property
    def suffixes(self) -> tuple[str, ...]:
        """The files it writes per split: `<name>-<split>.<suffix>`."""
        if self.csv_columns:
            return ()
        return ("jsonl", "parquet") if self.parquet_schema is not None else ("jsonl",)

    def table(self, row: Row) -> str:
        """The CSV table a row of a CSV format goes in."""
        raise NotImplementedError(f"{self.name} is written as JSON Lines")

    def rows(self, group: Sequence[FeedbackRecord], rules: RowRules) -> Iterator[Row]:
        """The rows made from the drafts of one request."""
        for record in group:
            yield from self.record_rows(record, rules)

    def record_rows(self, record: FeedbackRecord, rules: RowRules) -> Iterator[Row]:
        raise NotImplementedError(f"{self.name} makes its rows from a request's drafts together")

    def prompt(self, row: Row) -> tuple[str, str]:
        """(system, user) prompt of a row: what the split and the duplicate check are keyed on."""
        return row["prompt"][0]["content"], row["prompt"][1]["content"]

    def answers(self, row: Row) -> list[str]:
        """The assistant texts of a row, for the near-duplicate check."""
        raise NotImplementedError

    def label(self, row: Row) -> str:
        """What the card counts rows by, beside the task."""
        return str(row["metadata"]["source"])

    def task(self, row: Row) -> str:
        return str(row["metadata"]["task"])

    def parquet_record(self, row: Row) -> dict[str, Any]:
        """The row as `parquet_schema` stores it."""
        raise NotImplementedError(f"{self.name} is not written as Parquet")


FORMATS: dict[str, ExportFormat] = {}


def register(cls: type[ExportFormat]) -> type[ExportFormat]:
    FORMATS[cls.name] = cls()
    return cls


def _prompt(record: FeedbackRecord) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": record.system_prompt},
        {"role": "user", "content": record.user_prompt},
    ]


def _answer(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _metadata(record: FeedbackRecord, source: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "draft_id": record.id,
        "request_id": record.request_id,
        "source": source,
        "task": record.task,
        "template_version": record.template_version,
        "model": record.model,
        "model_version": record.model_version,
        "quantization": record.quantization,
        "sampling": record.sampling,
        "seed": record.seed,
        "created": record.created_at.isoformat(),
        "ups": record.ups,
        "downs": record.downs,
    }
    if record.experiment_id is not None:
        metadata["experiment"], metadata["variant"] = record.experiment_id, record.variant
    if record.author is not None:
        metadata["author"] = record.author
    return metadata


@register
class Sft(ExportFormat):
    name = "sft"
    help = "messages"
    row_shape = '`{"messages": [system, user, assistant], "metadata": {…}}`'
    how_chosen = ("drafts whose mean rating (−1…1) reaches the rating threshold, with at least the minimum\n"
                  "  number of votes, and every improved version a member wrote (the `source` in `metadata` says which).")

    def record_rows(self, record: FeedbackRecord, rules: RowRules) -> Iterator[Row]:
        """Well-rated drafts and every improved version a member wrote."""
        if rules.rated(record) and record.score is not None and record.score >= rules.threshold:
            yield {"messages": _prompt(record) + _answer(record.output), "metadata": _metadata(record, "rated")}
        for text in record.improvements:
            yield {"messages": _prompt(record) + _answer(text), "metadata": _metadata(record, "improvement")}

    def prompt(self, row: Row) -> tuple[str, str]:
        return row["messages"][0]["content"], row["messages"][1]["content"]

    def answers(self, row: Row) -> list[str]:
        return [row["messages"][2]["content"]]


@register
class Dpo(ExportFormat):
    name = "dpo"
    help = "chosen/rejected pairs"
    row_shape = '`{"prompt": [system, user], "chosen": [assistant], "rejected": [assistant], "metadata": {…}}`'
    how_chosen = ("an improved version (chosen) over the draft it improves (rejected); per request, the\n"
                  "  best- over the worst-rated of its drafts (regenerations; `head-to-head` where an experiment gave\n"
                  "  them to different variants), when their ratings differ; and the\n"
                  "  variant members picked most (chosen) over each variant shown with it that fewer picked.")

    def rows(self, group: Sequence[FeedbackRecord], rules: RowRules) -> Iterator[Row]:
        """Preference pairs within one request: improvement over original, best- over worst-rated regeneration,
        picked variant over each other variant."""
        for record in group:
            for text in record.improvements:
                yield self._pair(record, chosen=text, rejected=record.output, source="improvement")
        yield from self._variant_pairs(group)
        rated = [record for record in group if rules.rated(record) and record.score is not None]
        if len(rated) >= 2:
            best = max(rated, key=lambda record: (record.score, -record.id))
            worst = min(rated, key=lambda record: (record.score, record.id))
            if best.score != worst.score:
                yield self._pair(best, chosen=best.output, rejected=worst.output, source=_sibling_source(best, worst))

    def _variant_pairs(self, group: Sequence[FeedbackRecord]) -> Iterator[Row]:
        """The most-picked variant of each variant group over every variant of the group picked less."""
        variant_groups: dict[int, list[FeedbackRecord]] = {}
        for record in group:
            if record.variant_group is not None:
                variant_groups.setdefault(record.variant_group, []).append(record)
        for variants in variant_groups.values():
            most = max(record.picks for record in variants)
            if not most:
                continue  # nobody picked: no preference to learn from
            for chosen in (record for record in variants if record.picks == most):
                for rejected in (record for record in variants if record.picks < most):
                    yield self._pair(chosen, chosen=chosen.output, rejected=rejected.output, source="variant pick")

    @staticmethod
    def _pair(record: FeedbackRecord, *, chosen: str, rejected: str, source: str) -> Row:
        return {
            "prompt": _prompt(record),
            "chosen": _answer(chosen),
            "rejected": _answer(rejected),
            "metadata": _metadata(record, source),
        }

    def answers(self, row: Row) -> list[str]:
        return [row["chosen"][0]["content"], row["rejected"][0]["content"]]


def _sibling_source(best: FeedbackRecord, worst: FeedbackRecord) -> str:
    """"head-to-head" when an experiment gave the two drafts to different variants, else "regeneration"."""
    rivals = best.experiment_id is not None and best.experiment_id == worst.experiment_id and best.variant != worst.variant
    return "head-to-head" if rivals else "regeneration"


@register
class Kto(ExportFormat):
    name = "kto"
    help = "labelled completions"
    row_shape = '`{"prompt": [system, user], "completion": [assistant], "label": true|false, "metadata": {…}}`'
    how_chosen = ("every draft with a net rating and at least the minimum number of votes; `label` is true\n"
                  "  when more members liked it than not. Ties are left out.")
    classes = ("good", "bad")
    trainer_config = "KTOConfig"

    def record_rows(self, record: FeedbackRecord, rules: RowRules) -> Iterator[Row]:
        """Every draft with a net rating, labelled good or bad."""
        if rules.rated(record) and record.score:
            yield {
                "prompt": _prompt(record),
                "completion": _answer(record.output),
                "label": record.score > 0,
                "metadata": _metadata(record, "rated"),
            }

    def answers(self, row: Row) -> list[str]:
        return [row["completion"][0]["content"]]

    def label(self, row: Row) -> str:
        return "good" if row["label"] else "bad"


@register
class Raw(ExportFormat):
    name = "raw"
    help = "every field"
    row_shape = "every stored field of the draft (JSON Lines and Parquet)"
    how_chosen = "every selected draft, rated or not, with its votes and improvements; not deduplicated."
    training = False
    parquet_schema = pa.schema([
        ("id", pa.int64()), ("parent_id", pa.int64()), ("task", pa.string()),
        ("inputs", pa.map_(pa.string(), pa.string())), ("system_prompt", pa.string()), ("user_prompt", pa.string()),
        ("output", pa.string()), ("template_version", pa.string()), ("model", pa.string()),
        ("quantization", pa.string()), ("sampling", pa.map_(pa.string(), pa.float64())), ("seed", pa.int64()),
        ("created_at", pa.timestamp("us", tz="UTC")), ("ups", pa.int64()), ("downs", pa.int64()),
        ("improvements", pa.list_(pa.string())), ("author", pa.string()), ("language", pa.string()),
        ("quality", pa.string()),  # the quality signals as JSON text, so new signals need no new schema
        ("variant_group", pa.int64()), ("picks", pa.int64()), ("experiment_id", pa.int64()), ("variant", pa.string()),
    ])

    def record_rows(self, record: FeedbackRecord, rules: RowRules) -> Iterator[Row]:
        row = {field.name: getattr(record, field.name) for field in fields(record)}  # not asdict: no deep copies
        row["created_at"] = record.created_at.isoformat()
        row["improvements"] = list(record.improvements)
        if record.author is None:
            del row["author"]
        yield row

    def prompt(self, row: Row) -> tuple[str, str]:
        return row["system_prompt"], row["user_prompt"]

    def label(self, row: Row) -> str:
        return "rated" if row["ups"] + row["downs"] else "unrated"

    def task(self, row: Row) -> str:
        return str(row["task"])

    def parquet_record(self, row: Row) -> dict[str, Any]:
        return {**row, "created_at": datetime.fromisoformat(row["created_at"]),
                "sampling": {name: float(value) for name, value in row["sampling"].items()},
                "quality": None if row["quality"] is None else json.dumps(row["quality"], ensure_ascii=False)}


@register
class Ads(ExportFormat):
    """Platform drafts as the platforms' bulk uploads take them, one CSV file per platform."""

    name = "ads"
    help = "CSV for Google Ads Editor and Meta Ads Manager"
    row_shape = ("one ad per row, in the columns of Google Ads Editor (`ads-google.csv`) and Meta Ads Manager "
                 "(`ads-meta.csv`) bulk imports")
    how_chosen = ("every finished Google or Meta draft whose fields all fit their limits (a draft with a field over\n"
                  "  its limit would be refused on import); Campaign, Ad group, Final URL and the like are left to fill in.")
    training = False
    # Google Ads Editor's import columns for a responsive search ad (its CSV template); Meta Ads Manager's
    # bulk import names primary text `Body`, the headline `Title` and the description `Link Description`.
    csv_columns = {
        "google": ("Campaign", "Ad group", "Ad type", *(f"Headline {n}" for n in range(1, 16)),
                   *(f"Description {n}" for n in range(1, 5)), "Path 1", "Path 2", "Final URL"),
        "meta": ("Campaign Name", "Ad Set Name", "Ad Name", "Body", "Title", "Link Description", "Link"),
    }
    _field_columns = {"google": {"headline": "Headline {index}", "description": "Description {index}"},
                      "meta": {"primary_text": "Body", "headline": "Title", "description": "Link Description"}}

    def record_rows(self, record: FeedbackRecord, rules: RowRules) -> Iterator[Row]:
        fields = record.fields or []
        if record.platform not in self.csv_columns or not fields or any(f["status"] != "fits" for f in fields):
            return
        names = self._field_columns[record.platform]
        columns = {names[field["key"]].format(index=field["index"]): field["text"] for field in fields}
        fixed = ({"Ad type": "Responsive search ad"} if record.platform == "google"
                 else {"Ad Name": f"copydesk draft {record.id}"})
        yield {"table": record.platform, "columns": {**fixed, **columns},
               "metadata": _metadata(record, record.platform)}

    def table(self, row: Row) -> str:
        return str(row["table"])


EXPORT_FORMATS: tuple[str, ...] = tuple(name for name, fmt in FORMATS.items() if not fmt.csv_columns)  # the dataset
EXPORT_CHOICES: tuple[str, ...] = tuple(FORMATS)  # what an export may be asked for by name


def formats_help() -> str:
    """What each format holds, for a command's help: "sft: messages; dpo: …"."""
    return "; ".join(f"{fmt.name}: {fmt.help}" for fmt in FORMATS.values())


def formats_list() -> str:
    """The formats' names as a sentence lists them: "sft, dpo, kto and raw"."""
    *rest, last = EXPORT_FORMATS
    return f"{', '.join(rest)} and {last}" if rest else last


def get_format(name: str) -> ExportFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown export format {name!r}; choose one of {', '.join(EXPORT_CHOICES)}") from None


class RequestGroups:
    """Collects records ordered by request and hands back each request's drafts once it is complete."""

    def __init__(self) -> None:
        self._group: list[FeedbackRecord] = []

    def add(self, record: FeedbackRecord) -> list[FeedbackRecord] | None:
        """The previous request's drafts when `record` starts a new request, else None."""
        if self._group and self._group[0].request_id != record.request_id:
            complete, self._group = self._group, [record]
            return complete
        self._group.append(record)
        return None

    def finish(self) -> list[FeedbackRecord] | None:
        complete, self._group = self._group, []
        return complete or None


async def export_rows(
    records: AsyncIterator[FeedbackRecord], export_format: str, rules: RowRules = RowRules()
) -> AsyncIterator[Row]:
    """Stream the rows of one format from records ordered by request."""
    shape = get_format(export_format)
    groups = RequestGroups()
    async for record in records:
        if (group := groups.add(record)) is not None:
            for row in shape.rows(group, rules):
                yield row
    if (group := groups.finish()) is not None:
        for row in shape.rows(group, rules):
            yield row
