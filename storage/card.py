"""The dataset card: README.md beside the exported files, for whoever trains on them.

Its YAML header declares one configuration per format, so `datasets.load_dataset(folder, "sft")`
finds the splits; its body says what the rows are, how many of each kind, how they were chosen and
how many drafts each rule left out. It is the folder's manifest, written last: it ends with each
file's row count, size and sha256. It carries no member or server id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from storage.atomic import FileEntry
from storage.exclusions import EXPLANATIONS, Exclusions
from storage.export import FORMATS

if TYPE_CHECKING:
    from storage.dataset import DatasetSummary

CARD = "README.md"

GENERAL_RULE = """\
- Only finished drafts. Left out always: drafts a moderator removed, drafts awaiting review (an
  open flag, including drafts held by the automatic checks), and drafts and improvements of
  members who have not allowed training use or asked for their data to be erased."""

HYGIENE = """\
- Duplicates (training formats): rows whose normalized text (Unicode NFKC, case folded,
  punctuation and extra spaces dropped) repeats a kept row are removed (exact); so are rows
  with the same prompt whose answers share about 80 % or more of their character 5-grams
  (near-exact; MinHash with 8 bands of 8, remembered in a fixed-size Bloom filter).
- Split: each row goes to `test` or `train` by a hash of its normalized prompt, so the same
  prompt never appears in both, in any format, and an export of the same data splits the same way.
- `metadata` carries each row's provenance: draft and request ids (copydesk's, not Discord's),
  task, template version, model, model version, quantization, sampling, seed, creation time, votes, and the
  author as a keyed pseudonym when the deployment pseudonymizes (else no author at all).
"""

HOW_CHOSEN = "\n".join([GENERAL_RULE, *[f"- `{fmt.name}`: {fmt.how_chosen}" for fmt in FORMATS.values()], HYGIENE])
CHECKSUMS = "## Checksums"
_CHECKSUM_ROW = re.compile(r"^\| `(?P<name>[^`]+)` \| (?P<rows>\d+|—) \| (?P<size>\d+) \| (?P<sha256>[0-9a-f]{64}) \|$")


class DatasetCard:
    """The card as the export folder's manifest: written last, it names each file with its rows, size and sha256."""

    name = CARD

    def __init__(self, summary: DatasetSummary) -> None:
        self._summary = summary

    def render(self, entries: Sequence[FileEntry]) -> str:
        return dataset_card(self._summary, entries)

    @staticmethod
    def entries(text: str) -> list[FileEntry]:
        _, _, checksums = text.partition(f"\n{CHECKSUMS}\n")
        return [FileEntry(match["name"], int(match["size"]), match["sha256"],
                          None if match["rows"] == "—" else int(match["rows"]))
                for line in checksums.splitlines() if (match := _CHECKSUM_ROW.match(line))]


def dataset_card(summary: DatasetSummary, entries: Sequence[FileEntry] = ()) -> str:
    return "\n".join([_header(summary), _body(summary, entries)])


def _header(summary: DatasetSummary) -> str:
    lines = ["---", "pretty_name: copydesk feedback export", "task_categories:", "- text-generation",
             "tags:", "- copydesk", *[f"- {fmt}" for fmt in summary.options.formats if FORMATS[fmt].training],
             "configs:"]
    for fmt in summary.options.formats:  # all JSON Lines: `datasets` reads one file type per folder
        splits = [split for split in ("train", "test") if summary.count(fmt, split)]
        if not splits:
            continue  # a configuration without data cannot be loaded
        lines += [f"- config_name: {fmt}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {fmt}-{split}.jsonl" for split in splits]
    if lines[-1] == "configs:":
        lines.pop()
    return "\n".join([*lines, "---", ""])


def _body(summary: DatasetSummary, entries: Sequence[FileEntry]) -> str:
    options, rules = summary.options, summary.options.rules
    parquet = " and ".join(f"`{fmt.name}`" for fmt in FORMATS.values() if fmt.parquet_schema is not None)
    parquet = f"; {parquet} also as Parquet" if parquet else ""
    lines = ["# copydesk feedback export", "",
             f"Exported {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {summary.drafts} drafts that passed the "
             f"exclusions below. One JSON Lines file per format and split{parquet}.", "",
             "## Files", "", "| format | row | train | test |", "| --- | --- | ---: | ---: |"]
    lines += [f"| `{fmt}` | {FORMATS[fmt].row_shape} | {summary.count(fmt, 'train')} | {summary.count(fmt, 'test')} |"
              if not FORMATS[fmt].csv_columns else f"| `{fmt}` | {FORMATS[fmt].row_shape} | {summary.count(fmt)} (not split) | — |"
              for fmt in options.formats]
    lines += ["", "## Rows per task and label", "", "| format | task | label | rows |", "| --- | --- | --- | ---: |"]
    lines += [f"| `{fmt}` | {task} | {label} | {count} |" for (fmt, task, label), count in sorted(summary.labels.items())]
    for fmt in options.formats:
        if (classes := FORMATS[fmt].classes) is not None:
            lines += ["", f"## Class balance ({fmt.upper()})", "",
                      *_balance(fmt, classes, *summary.balance(fmt), FORMATS[fmt].trainer_config)]
    first, last = summary.first, summary.last
    lines += ["", "## Drafts", "",
              f"- Created from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC." if first and last
              else "- No drafts matched.",
              "- Models: " + (", ".join(f"{model}: {n}" for model, n in summary.models.most_common()) or "none") + ".",
              "- Template versions: " + (", ".join(f"{v}: {n}" for v, n in sorted(summary.template_versions.items()))
                                         or "none") + "."]
    duplicates = ", ".join(f"{fmt} {kind}: {n}" for (fmt, kind), n in sorted(summary.duplicates.items()))
    worst = max(summary.false_positive_rates.values(), default=0.0)
    lines += ["", "## Filters and settings", "",
              *[f"- {name.replace('_', ' ')}: {_value(value)}" for name, value in summary.filters.items()],
              *([] if summary.filters else ["- no filter: every exportable draft"]),
              f"- rating threshold for SFT: {rules.threshold:g}; minimum votes for a rating to count: {rules.min_votes}",
              f"- test fraction: {options.test_fraction:g}",
              f"- duplicates removed: {duplicates or 'none'}" if options.deduplicate else "- duplicates kept (deduplication off)",
              *([f"- estimated chance that a unique row was taken for a duplicate: {worst:.2g}"]
                if options.deduplicate else []),
              *_left_out(summary.exclusions),
              "", "## How rows were chosen", "", HOW_CHOSEN,
              CHECKSUMS, "", "Written last, after every file below was complete and synced to disk.", "",
              "| file | rows | bytes | sha256 |", "| --- | ---: | ---: | --- |",
              *[f"| `{entry.name}` | {'—' if entry.rows is None else entry.rows} | {entry.size} | {entry.sha256} |"
                for entry in entries], ""]
    return "\n".join(lines)


def _left_out(exclusions: Exclusions | None) -> list[str]:
    if exclusions is None:
        return []
    lines = ["", "## Drafts left out", "", f"{exclusions.line().capitalize()}; each draft is counted under the "
             "first rule it fails, in this order.", "", "| reason | drafts | what it means |", "| --- | ---: | --- |"]
    return lines + [f"| {reason} | {count} | {EXPLANATIONS[reason]} |" for reason, count in exclusions.counts.items()]


def _balance(fmt: str, classes: tuple[str, str], good: int, bad: int, trainer_config: str) -> list[str]:
    total = good + bad
    if not total:
        return [f"No {fmt.upper()} rows."]
    desirable_name, undesirable_name = classes
    lines = [f"{good} {desirable_name} ({good / total:.0%}) and {bad} {undesirable_name} ({bad / total:.0%})."]
    if good and bad:
        desirable, undesirable = (1.0, good / bad) if good >= bad else (bad / good, 1.0)
        lines.append(f"To weight the classes equally in TRL's `{trainer_config}`: `desirable_weight={desirable:.3g}`, "
                     f"`undesirable_weight={undesirable:.3g}` (TRL advises keeping desirable_weight × good / "
                     "(undesirable_weight × bad) between 1 and 4/3).")
    return lines


def _value(value: object) -> str:
    if value is True:
        return "one Discord server (its id is not written here)"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
