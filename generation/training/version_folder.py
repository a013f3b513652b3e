"""A model version's folder, written whole: the adapter, the checkpoint merged for serving, the card.

`adapter/` is what vLLM serves (`--lora-modules NAME=FOLDER/adapter`) and what the evaluation
loads. `merged/` is the adapter merged into the full-precision base and saved as a plain
checkpoint, which the local engine quantizes to NF4 at load: an unmerged adapter slowed one
draft by about a third, a merged one costs nothing, and merging into weights that are already
4-bit gives rounding errors (feedback-loop notes). `README.md` is the model card. The folder is
built under a temporary name and renamed into place, so a killed run leaves no version behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.model_source import ModelSource
from generation.training.config import TrainingError
from generation.training.disk import disk_full, filled_the_disk

ADAPTER, MERGED, CARD = "adapter", "merged", "README.md"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class VersionFolder:
    path: Path
    adapter_sha256: str

    @property
    def adapter(self) -> Path:
        return self.path / ADAPTER

    @property
    def merged(self) -> Path:
        return self.path / MERGED


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def base_sha256(base: ModelSource) -> str:
    """One hash over the base checkpoint's weight files (name and content, in name order)."""
    folder = Path(base.location)
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        raise TrainingError(f"the base model at {base.location} has no safetensors weights to train on")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + sha256_of(path).encode())
    return digest.hexdigest()


def write_version_folder(destination: Path, adapter: Path, base: ModelSource, facts: Mapping[str, Any]) -> VersionFolder:
    """Copy the trained adapter, merge it for serving, write the card; then put the folder in place."""
    if destination.exists():
        raise TrainingError(f"{destination} exists already; a version's folder is never overwritten")
    destination.parent.mkdir(parents=True, exist_ok=True)
    for killed in destination.parent.glob(f".{destination.name}-partial-*"):  # what a killed run of it left
        shutil.rmtree(killed, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-partial-", dir=destination.parent))
    try:
        shutil.copytree(adapter, staging / ADAPTER,
                        ignore=shutil.ignore_patterns("training_args.bin", "README.md", "checkpoint-*"))
        adapter_sha256 = sha256_of(staging / ADAPTER / ADAPTER_WEIGHTS)
        _merge(base, staging / ADAPTER, staging / MERGED)
        (staging / CARD).write_text(render_card({**facts, "adapter_sha256": adapter_sha256}), encoding="utf-8")
        _sync_tree(staging)
        os.replace(staging, destination)
    except Exception as error:
        if filled_the_disk(error, staging):
            raise disk_full(destination.parent, "the trained adapter is kept; the version's folder needs room for "
                                                "the merged checkpoint, the base model's size in full precision") from error
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    folder = VersionFolder(destination, adapter_sha256)
    verify(folder.path, adapter_sha256)
    return folder


def verify(path: Path, adapter_sha256: str) -> None:
    """The folder is whole and its adapter is the one registered."""
    weights = path / ADAPTER / ADAPTER_WEIGHTS
    if not weights.is_file() or not (path / MERGED / "config.json").is_file() or not (path / CARD).is_file():
        raise TrainingError(f"{path} is not a complete model version folder (adapter, merged checkpoint and card)")
    if sha256_of(weights) != adapter_sha256:
        raise TrainingError(f"{weights} is not the adapter that was registered (its sha256 differs)")


def _merge(base: ModelSource, adapter: Path, target: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base.location, dtype=torch.float32, device_map="cpu",
                                                 local_files_only=base.local_files_only)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(target)
    AutoTokenizer.from_pretrained(base.location, local_files_only=base.local_files_only).save_pretrained(target)


def _sync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


def render_card(facts: Mapping[str, Any]) -> str:
    """The model card: what the version is, what it was trained on and how, and how it scored."""
    evaluation = facts.get("evaluation_table", "")
    lines = [
        "---", "library_name: peft", f"base_model: {facts.get('base_model', '')}",
        "tags: [copydesk, lora, qlora, trl]", "---", "",
        f"# copydesk model version `{facts.get('name', '')}`", "",
        "A LoRA adapter trained by `copydesk train` on the team's feedback. `adapter/` serves with vLLM "
        f"(`--enable-lora --lora-modules {facts.get('name', '')}=<this folder>/adapter`); `merged/` is the adapter "
        "merged into the full-precision base, which copydesk's local engine loads in 4 bits.", "",
        "## Provenance", "",
        "| fact | value |", "| --- | --- |",
    ]
    for key in ("name", "base_model", "base_sha256", "adapter_sha256", "method", "seed", "wall_time_s", "created"):
        lines.append(f"| {key} | `{facts.get(key, '')}` |")
    lines += ["", "Hyperparameters:", "", "```json", json.dumps(facts.get("hyperparameters", {}), indent=2, sort_keys=True),
              "```", "", "Libraries:", "", "```json", json.dumps(facts.get("libraries", {}), indent=2, sort_keys=True),
              "```", "", "## Trained on", "", "```json",
              json.dumps(facts.get("source_export", {}), indent=2, sort_keys=True), "```", "",
              "## Evaluation on the export's test split", "", evaluation, ""]
    return "\n".join(lines)
