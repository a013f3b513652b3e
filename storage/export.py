"""Turning stored feedback into training rows: SFT, DPO and KTO in TRL's conversational format, and raw.

Rows are produced while streaming: drafts arrive grouped by request, so pairs between
regenerations of one request are formed from one group at a time and memory stays flat.
Rows never carry member ids (at most the author's keyed pseudonym, when the export has a key);
each carries its provenance in `metadata`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
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


def sft_rows(record: FeedbackRecord, threshold: float) -> Iterator[Row]:
    """Well-rated drafts and every improved version a member wrote."""
    if record.score is not None and record.score >= threshold:
        yield {"messages": _prompt(record) + _answer(record.output), "metadata": _metadata(record, "rated")}
    for text in record.improvements:
        yield {"messages": _prompt(record) + _answer(text), "metadata": _metadata(record, "improvement")}


def kto_rows(record: FeedbackRecord) -> Iterator[Row]:
    """Every draft with a net rating, labelled good or bad."""
    if record.score:
        yield {
            "prompt": _prompt(record),
            "completion": _answer(record.output),
            "label": record.score > 0,
            "metadata": _metadata(record, "rated"),
        }


def dpo_rows(group: list[FeedbackRecord]) -> Iterator[Row]:
    """Preference pairs within one request: improvement over original, better-rated over worse-rated."""
    for record in group:
        for text in record.improvements:
            yield _pair(record, chosen=text, rejected=record.output, source="improvement")
    rated = [record for record in group if record.score is not None]
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
    row = asdict(record)
    row["created_at"] = record.created_at.isoformat()
    row["improvements"] = list(record.improvements)
    if record.author is None:
        del row["author"]
    return row


def _record_rows(record: FeedbackRecord, export_format: str, threshold: float) -> Iterator[Row]:
    if export_format == "sft":
        return sft_rows(record, threshold)
    if export_format == "kto":
        return kto_rows(record)
    return iter([raw_row(record)])


async def export_rows(
    records: AsyncIterator[FeedbackRecord], export_format: str, *, threshold: float = 0.5
) -> AsyncIterator[Row]:
    """Stream the rows of one format from records ordered by request."""
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {export_format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    group: list[FeedbackRecord] = []
    async for record in records:
        if export_format != "dpo":
            for row in _record_rows(record, export_format, threshold):
                yield row
        elif group and group[0].request_id != record.request_id:
            for row in dpo_rows(group):
                yield row
            group = [record]
        else:
            group.append(record)
    for row in dpo_rows(group):
        yield row
