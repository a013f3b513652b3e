"""The dataset card: README.md beside the exported files, for whoever trains on them.

Its YAML header declares one configuration per format, so `datasets.load_dataset(folder, "sft")`
finds the splits; its body says what the rows are, how many of each kind, and how they were
chosen. It carries no member or server id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.dataset import DatasetSummary

ROW_SHAPES = {
    "sft": '`{"messages": [system, user, assistant], "metadata": {…}}`',
    "dpo": '`{"prompt": [system, user], "chosen": [assistant], "rejected": [assistant], "metadata": {…}}`',
    "kto": '`{"prompt": [system, user], "completion": [assistant], "label": true|false, "metadata": {…}}`',
    "raw": "every stored field of the draft (JSON Lines and Parquet)",
}

HOW_CHOSEN = """\
- Only finished drafts. Left out always: drafts a moderator removed, drafts awaiting review (an
  open flag, including drafts held by the automatic checks), and drafts and improvements of
  members who have not allowed training use or asked for their data to be erased.
- `sft`: drafts whose mean rating (−1…1) reaches the rating threshold, with at least the minimum
  number of votes, and every improved version a member wrote (the `source` in `metadata` says which).
- `dpo`: an improved version (chosen) over the draft it improves (rejected); and per request, the
  best- over the worst-rated of its drafts (regenerations), when their ratings differ.
- `kto`: every draft with a net rating and at least the minimum number of votes; `label` is true
  when more members liked it than not. Ties are left out.
- `raw`: every selected draft, rated or not, with its votes and improvements; not deduplicated.
- Duplicates (training formats): rows whose normalized text (Unicode NFKC, case folded,
  punctuation and extra spaces dropped) repeats a kept row are removed (exact); so are rows
  with the same prompt whose answers share about 80 % or more of their character 5-grams
  (near-exact; MinHash with 8 bands of 8, remembered in a fixed-size Bloom filter).
- Split: each row goes to `test` or `train` by a hash of its normalized prompt, so the same
  prompt never appears in both, in any format, and an export of the same data splits the same way.
- `metadata` carries each row's provenance: draft and request ids (copydesk's, not Discord's),
  task, template version, model, quantization, sampling, seed, creation time, votes, and the
  author as a keyed pseudonym when the deployment pseudonymizes (else no author at all).
"""


def dataset_card(summary: DatasetSummary) -> str:
    return "\n".join([_header(summary), _body(summary)])


def _header(summary: DatasetSummary) -> str:
    lines = ["---", "pretty_name: copydesk feedback export", "task_categories:", "- text-generation",
             "tags:", "- copydesk", *[f"- {fmt}" for fmt in summary.options.formats if fmt != "raw"], "configs:"]
    for fmt in summary.options.formats:  # all JSON Lines: `datasets` reads one file type per folder
        splits = [split for split in ("train", "test") if summary.count(fmt, split)]
        if not splits:
            continue  # a configuration without data cannot be loaded
        lines += [f"- config_name: {fmt}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {fmt}-{split}.jsonl" for split in splits]
    if lines[-1] == "configs:":
        lines.pop()
    return "\n".join([*lines, "---", ""])


def _body(summary: DatasetSummary) -> str:
    options, rules = summary.options, summary.options.rules
    lines = ["# copydesk feedback export", "",
             f"Exported {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {summary.drafts} drafts that passed the "
             "exclusions below. One JSON Lines file per format and split; `raw` also as Parquet.", "",
             "## Files", "", "| format | row | train | test |", "| --- | --- | ---: | ---: |"]
    lines += [f"| `{fmt}` | {ROW_SHAPES[fmt]} | {summary.count(fmt, 'train')} | {summary.count(fmt, 'test')} |"
              for fmt in options.formats]
    lines += ["", "## Rows per task and label", "", "| format | task | label | rows |", "| --- | --- | --- | ---: |"]
    lines += [f"| `{fmt}` | {task} | {label} | {count} |" for (fmt, task, label), count in sorted(summary.labels.items())]
    if "kto" in options.formats:
        lines += ["", "## Class balance (KTO)", "", *_balance(*summary.kto_balance())]
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
              "", "## How rows were chosen", "", HOW_CHOSEN]
    return "\n".join(lines)


def _balance(good: int, bad: int) -> list[str]:
    total = good + bad
    if not total:
        return ["No KTO rows."]
    lines = [f"{good} good ({good / total:.0%}) and {bad} bad ({bad / total:.0%})."]
    if good and bad:
        desirable, undesirable = (1.0, good / bad) if good >= bad else (bad / good, 1.0)
        lines.append(f"To weight the classes equally in TRL's `KTOConfig`: `desirable_weight={desirable:.3g}`, "
                     f"`undesirable_weight={undesirable:.3g}` (TRL advises keeping desirable_weight × good / "
                     "(undesirable_weight × bad) between 1 and 4/3).")
    return lines


def _value(value: object) -> str:
    if value is True:
        return "one Discord server (its id is not written here)"
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)
