"""One training run: QLoRA phases with TRL's trainers, checkpointed, stoppable, resumable.

The base is loaded through the engine's own 4-bit path (`generation.loading`), so the adapter is
trained on the weights it will be served with. TRL's defaults are changed where they do not suit
a CPU (no bf16 where it is emulated, no gradient checkpointing: feedback-loop notes). Each phase
writes into `work/<phase>/`: checkpoints while it runs, `final/` once done, so `sft+dpo`
resumes after its finished SFT phase, and a killed run leaves its last checkpoint intact.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.loading import load_model, native_bf16, pick_device
from generation.model_source import ModelSource
from generation.training.config import FORMATS_OF, TrainingConfig, TrainingData, TrainingError
from generation.training.disk import disk_full, filled_the_disk
from generation.training.progress import ProgressCallback, TrainingProgress

FINAL = "final"


class TrainingInterrupted(TrainingError):
    """Stopped on request after saving a checkpoint; `--resume` continues from it."""


@dataclass(frozen=True)
class TrainingRun:
    adapter: Path  # the last phase's adapter folder (adapter_model.safetensors, adapter_config.json)
    steps: dict[str, int]  # optimisation steps per phase
    train_loss: dict[str, float]
    wall_time_s: float
    device: str


def train_adapter(
    base: ModelSource, data: TrainingData, work: Path, config: TrainingConfig, *, device: str = "auto",
    on_progress: Callable[[TrainingProgress], None] = lambda progress: None,
    stop: threading.Event | None = None, resume: bool = False,
) -> TrainingRun:
    """Train `config.method` on `data`, phase by phase, in `work`; blocks (run it off the event loop).

    Raises TrainingInterrupted when `stop` is set mid-run (the checkpoint is saved first), and
    TrainingError for data it cannot train on or a disk that fills up.
    """
    data.check_enough(config.method)
    _require_training_libraries()
    device = pick_device(device)
    stop = stop or threading.Event()
    if work.exists() and any(work.iterdir()) and not resume:
        raise TrainingError(f"{work} holds an earlier, unfinished run of this version; add --resume to continue "
                            f"it, or remove the folder to start again")
    started = time.monotonic()
    steps: dict[str, int] = {}
    losses: dict[str, float] = {}
    previous: Path | None = None
    for phase in FORMATS_OF[config.method]:
        final = work / phase / FINAL
        if not (final / "adapter_model.safetensors").is_file():
            steps[phase], losses[phase] = _train_phase(phase, base, data, work / phase, config, device, previous,
                                                       on_progress, stop)
        previous = final
    assert previous is not None
    return TrainingRun(adapter=previous, steps=steps, train_loss=losses,
                       wall_time_s=time.monotonic() - started, device=device)


def _train_phase(
    phase: str, base: ModelSource, data: TrainingData, folder: Path, config: TrainingConfig, device: str,
    start_from: Path | None, on_progress: Callable[[TrainingProgress], None], stop: threading.Event,
) -> tuple[int, float]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import PrinterCallback

    if config.threads > 0:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    bf16 = native_bf16(device)
    loaded = load_model(base, "nf4", device, bf16_prefill=False, compute_dtype="bfloat16" if bf16 else "float32")
    model: Any = loaded.model
    peft_config = None
    if start_from is None:
        peft_config = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    else:  # the next phase goes on training the previous phase's adapter
        model = PeftModel.from_pretrained(model, str(start_from), is_trainable=True)
    trainer_class, config_class, extra = _trainer(phase, config)
    args = config_class(
        output_dir=str(folder), use_cpu=device == "cpu", bf16=bf16 and device != "cpu", fp16=False,
        gradient_checkpointing=False, num_train_epochs=config.epochs, max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
        seed=config.seed, data_seed=config.seed, max_length=config.max_length,
        report_to=[], logging_steps=1, save_strategy="no", disable_tqdm=True,
        include_num_input_tokens_seen="all", dataloader_num_workers=0, **extra,
    )
    callback = ProgressCallback(phase, on_progress, stop)
    trainer = trainer_class(
        model=model, args=args, train_dataset=Dataset.from_list(data.rows(phase, "train")),
        processing_class=loaded.tokenizer, peft_config=peft_config, callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; the progress line says it once
    checkpoint = _latest_checkpoint(folder)
    staging = folder / f".{FINAL}-partial"
    try:
        result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        if callback.stopped_at is not None:
            raise TrainingInterrupted(
                f"stopped at step {callback.stopped_at} of {trainer.state.max_steps} ({phase}); the checkpoint is "
                f"in {_latest_checkpoint(folder)}. Nothing was registered: run the same command with --resume "
                "to continue"
            )
        shutil.rmtree(staging, ignore_errors=True)
        trainer.save_model(str(staging))
        os.replace(staging, folder / FINAL)
    except TrainingInterrupted:
        raise
    except Exception as error:
        if filled_the_disk(error, folder):
            shutil.rmtree(staging, ignore_errors=True)  # a half-written adapter only takes room
            kept = _latest_checkpoint(folder)
            raise disk_full(folder, f"{phase} goes on from {kept.name}, which is kept" if kept else
                            f"{phase} had no checkpoint yet, so it starts again") from error
        raise
    return trainer.state.global_step, float(result.training_loss)


def _require_training_libraries() -> None:
    try:
        import datasets  # noqa: F401
        import peft  # noqa: F401
        import trl  # noqa: F401
    except ImportError as missing:
        raise TrainingError(f"training needs {missing.name}, which is not installed: "
                            "pip install 'copydesk[train]' (make install does)") from None


def _trainer(phase: str, config: TrainingConfig) -> tuple[Any, Any, dict[str, Any]]:
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    if phase == "sft":
        return SFTTrainer, SFTConfig, {}
    if phase == "dpo":
        return DPOTrainer, DPOConfig, {"beta": config.beta}
    return KTOTrainer, KTOConfig, {"beta": config.beta}


def _latest_checkpoint(folder: Path) -> Path | None:
    checkpoints = [path for path in folder.glob("checkpoint-*") if path.name.removeprefix("checkpoint-").isdigit()]
    return max(checkpoints, key=lambda path: int(path.name.removeprefix("checkpoint-")), default=None)
