"""Turning stored feedback into training rows: SFT, DPO and KTO in TRL's conversational format, and raw.

Rows are produced while streaming: drafts arrive grouped by request, so pairs between
regenerations of one request are formed from one group at a time and memory stays flat.
Rows never carry member ids (at most the author's keyed pseudonym, when the export has a key);
each carries its provenance in `metadata`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, fields
from typing import Any

from storage.feedback import FeedbackRecord

EXPORT_FORMATS: tuple[str, ...] = ("sft", "dpo", "kto", "raw")

Row = dict[str, Any]


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
        "quantization": record.quantization,
        "sampling": record.sampling,
        "seed": record.seed,
        "created": record.created_at.isoformat(),
        "ups": record.ups,
        "downs": record.downs,
    }
    if record.author is not None:
        metadata["author"] = record.author
    return metadata


@dataclass(frozen=True, slots=True)
class RowRules:
    """Which ratings count: a draft's mean rating (−1…1) must reach `threshold` for SFT, and a rating
    counts only with at least `min_votes` votes behind it (improvements need none)."""

    threshold: float = 0.5
    min_votes: int = 1

    def rated(self, record: FeedbackRecord) -> bool:
        return record.votes >= max(1, self.min_votes)


def sft_rows(record: FeedbackRecord, rules: RowRules = RowRules()) -> Iterator[Row]:
    """Well-rated drafts and every improved version a member wrote."""
    if rules.rated(record) and record.score is not None and record.score >= rules.threshold:
        yield {"messages": _prompt(record) + _answer(record.output), "metadata": _metadata(record, "rated")}
    for text in record.improvements:
        yield {"messages": _prompt(record) + _answer(text), "metadata": _metadata(record, "improvement")}


def kto_rows(record: FeedbackRecord, rules: RowRules = RowRules()) -> Iterator[Row]:
    """Every draft with a net rating, labelled good or bad."""
    if rules.rated(record) and record.score:
        yield {
            "prompt": _prompt(record),
            "completion": _answer(record.output),
            "label": record.score > 0,
            "metadata": _metadata(record, "rated"),
        }


def dpo_rows(group: list[FeedbackRecord], rules: RowRules = RowRules()) -> Iterator[Row]:
    """Preference pairs within one request: improvement over original, best- over worst-rated regeneration."""
    for record in group:
        for text in record.improvements:
            yield _pair(record, chosen=text, rejected=record.output, source="improvement")
    rated = [record for record in group if rules.rated(record) and record.score is not None]
    if len(rated) >= 2:
        best = max(rated, key=lambda record: (record.score, -record.id))
        worst = min(rated, key=lambda record: (record.score, record.id))
        if best.score != worst.score:
            yield _pair(best, chosen=best.output, rejected=worst.output, source="regeneration")


def _pair(record: FeedbackRecord, *, chosen: str, rejected: str, source: str) -> Row:
    return {
        "prompt": _prompt(record),
        "chosen": _answer(chosen),
        "rejected": _answer(rejected),
        "metadata": _metadata(record, source),
    }


def raw_row(record: FeedbackRecord) -> Row:
    row = {field.name: getattr(record, field.name) for field in fields(record)}  # not asdict: no deep copies
    row["created_at"] = record.created_at.isoformat()
    row["improvements"] = list(record.improvements)
    if record.author is None:
        del row["author"]
    return row


def group_rows(group: list[FeedbackRecord], export_format: str, rules: RowRules = RowRules()) -> Iterator[Row]:
    """The rows of one format made from the drafts of one request."""
    if export_format == "dpo":
        yield from dpo_rows(group, rules)
        return
    for record in group:
        if export_format == "sft":
            yield from sft_rows(record, rules)
        elif export_format == "kto":
            yield from kto_rows(record, rules)
        else:
            yield raw_row(record)


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


def check_format(export_format: str) -> None:
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {export_format!r}; choose one of {', '.join(EXPORT_FORMATS)}")


async def export_rows(
    records: AsyncIterator[FeedbackRecord], export_format: str, rules: RowRules = RowRules()
) -> AsyncIterator[Row]:
    """Stream the rows of one format from records ordered by request."""
    check_format(export_format)
    groups = RequestGroups()
    async for record in records:
        if (group := groups.add(record)) is not None:
            for row in group_rows(group, export_format, rules):
                yield row
    if (group := groups.finish()) is not None:
        for row in group_rows(group, export_format, rules):
            yield row
