"""What a training run is given: its method and hyperparameters, and the export files it reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generation.errors import GenerationError

METHODS = ("sft", "dpo", "kto", "sft+dpo")
FORMATS_OF: dict[str, tuple[str, ...]] = {"sft": ("sft",), "dpo": ("dpo",), "kto": ("kto",), "sft+dpo": ("sft", "dpo")}
# Fewer training rows than this teach nothing worth a version (one batch of 4, twice); KTO needs
# rows of both labels to weigh one against the other.
MIN_TRAIN_ROWS = 8


class TrainingError(GenerationError):
    """The run cannot start or finish as asked; the message says why and what to do. Nothing is registered."""


@dataclass(frozen=True)
class TrainingConfig:
    """LoRA on every linear layer of the 4-bit base (QLoRA); the defaults suit a small model on a few cores."""

    method: str = "sft"
    epochs: float = 2.0
    seed: int = 0
    learning_rate: float = 2e-4
    batch_size: int = 4
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    max_length: int = 512  # tokens of prompt and answer
    max_steps: int = -1  # > 0 caps each phase (tests, quick tries)
    beta: float = 0.1  # DPO and KTO: how far the model may move from the base
    threads: int = 0  # torch threads; 0: all cores

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise TrainingError(f"method must be one of {', '.join(METHODS)} (got {self.method!r})")
        if self.epochs <= 0:
            raise TrainingError(f"epochs must be more than 0 (got {self.epochs:g})")

    def hyperparameters(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key not in ("method", "seed", "threads")}


@dataclass(frozen=True)
class TrainingData:
    """The export's JSON Lines files by format and split (`train`, `test`); `left_out` says what the export dropped."""

    files: dict[tuple[str, str], Path]
    left_out: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def rows(self, export_format: str, split: str) -> list[dict[str, Any]]:
        """Rows without their metadata, which the trainers do not read."""
        path = self.files.get((export_format, split))
        if path is None:
            return []
        rows = []
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    row.pop("metadata", None)
                    rows.append(row)
        return rows

    def check_enough(self, method: str) -> None:
        """Refuse a method the export cannot feed, saying how many rows there are and are needed."""
        for export_format in FORMATS_OF[method]:
            rows = self.rows(export_format, "train")
            if len(rows) < MIN_TRAIN_ROWS:
                raise TrainingError(
                    f"{method} needs at least {MIN_TRAIN_ROWS} {export_format} training rows; the export has "
                    f"{len(rows)}{f' ({self.left_out})' if self.left_out else ''}. Collect more feedback "
                    "or pick a method the export has rows for (`copydesk export` prints what it wrote)"
                )
            if export_format == "kto":
                labels = {bool(row["label"]) for row in rows}
                if labels != {True, False}:
                    missing = "👎" if True in labels else "👍"
                    raise TrainingError(f"kto needs drafts rated both ways; the export's kto rows have no {missing} ones")
