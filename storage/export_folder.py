"""Reading a finished export back, for whoever trains on it: its files, verified against its card.

An export folder is a copydesk export only if its card (the manifest, written last) lists its
files and each file still has the size and sha256 the card gives: anything else — a folder of
other data, a half-copied export, a file edited since — is refused before a trainer reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from storage.atomic import FileEntry, file_sha256
from storage.card import CARD, DatasetCard
from storage.dataset import SPLITS, file_name
from storage.errors import StorageError

_LEFT_OUT_ROW = re.compile(r"^\| (?P<reason>[a-z][a-z ,/-]*) \| (?P<count>\d+) \|")


@dataclass(frozen=True)
class ExportFolder:
    """A verified export: where each format's split is, its row count, and what the export left out."""

    folder: Path
    files: tuple[FileEntry, ...]
    left_out: tuple[tuple[str, int], ...]  # (reason, drafts), as the card lists them

    def path(self, export_format: str, split: str) -> Path | None:
        name = file_name(export_format, split)
        return self.folder / name if any(entry.name == name for entry in self.files) else None

    def rows(self, export_format: str, split: str) -> int:
        name = file_name(export_format, split)
        return next((entry.rows or 0 for entry in self.files if entry.name == name), 0)

    def left_out_line(self) -> str:
        taken = [f"{count} {reason}" for reason, count in self.left_out if count]
        return f"the export left out {', '.join(taken)}" if taken else "the export left out no draft"

    def provenance(self) -> dict[str, object]:
        """What a model trained on it records: the folder, each file's sha256, rows per format and split."""
        return {
            "folder": str(self.folder),
            "files": {entry.name: entry.sha256 for entry in self.files},
            "rows": {entry.name.removesuffix(".jsonl"): entry.rows for entry in self.files
                     if entry.name.endswith(".jsonl") and entry.rows is not None},
        }


def read_export(folder: Path) -> ExportFolder:
    """Verify `folder` against its card; raise StorageError saying what is wrong."""
    folder = folder.expanduser().absolute()
    if not folder.is_dir():
        raise StorageError(f"{folder} is not a folder; give the folder `copydesk export --out` wrote")
    card_path = folder / CARD
    try:
        card = card_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        card = ""
    entries = DatasetCard.entries(card) if "copydesk feedback export" in card else []
    if not entries:
        raise StorageError(f"{folder} is not a copydesk export (no dataset card listing its files); "
                           "make one with `copydesk export --out FOLDER`")
    for entry in entries:
        _verify(folder, entry)
    left_out = tuple((match["reason"], int(match["count"])) for line in _section(card, "## Drafts left out")
                     if (match := _LEFT_OUT_ROW.match(line)) and match["reason"] != "reason")
    return ExportFolder(folder, tuple(entries), left_out)


def _verify(folder: Path, entry: FileEntry) -> None:
    path = folder / entry.name
    if Path(entry.name).name != entry.name or not path.is_file():
        raise StorageError(f"{folder} is incomplete: its card lists {entry.name}, which is missing")
    if path.stat().st_size != entry.size or file_sha256(path) != entry.sha256:
        raise StorageError(f"{path} is not the file the export's card lists (changed since it was written); "
                           "export again rather than train on it")


def _section(card: str, heading: str) -> list[str]:
    _, _, rest = card.partition(f"\n{heading}\n")
    lines: list[str] = []
    for line in rest.splitlines():
        if line.startswith("## "):
            break
        lines.append(line)
    return lines


__all__ = ["SPLITS", "ExportFolder", "read_export"]
