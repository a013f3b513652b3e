"""Progress of a run as the trainer reports it, and the switch that stops it at the next step."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback


@dataclass(frozen=True)
class TrainingProgress:
    phase: str  # the method being trained now ("sft" or "dpo" in sft+dpo)
    step: int
    steps: int
    loss: float | None
    tokens_per_s: float
    seconds_left: float

    def line(self) -> str:
        """One line, redrawn in place by a terminal: `sft ███░░ 12/40 loss 2.31 · 150 tok/s · 1 min 20 s left`."""
        done = round(20 * self.step / self.steps) if self.steps else 0
        loss = "…" if self.loss is None else f"{self.loss:.3f}"
        minutes, seconds = divmod(round(self.seconds_left), 60)
        left = f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
        return (f"{self.phase} {'█' * done}{'░' * (20 - done)} {self.step}/{self.steps} loss {loss} · "
                f"{self.tokens_per_s:.0f} tok/s · {left} left")


class ProgressCallback(TrainerCallback):
    """Reports each step and asks the trainer to save a checkpoint and stop once `stop` is set."""

    def __init__(self, phase: str, on_progress: Callable[[TrainingProgress], None], stop: threading.Event) -> None:
        self._phase, self._on_progress, self._stop = phase, on_progress, stop
        self._started = time.monotonic()
        self._first_step = self._first_tokens = 0
        self._loss: float | None = None
        self.stopped_at: int | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # A resumed run starts at its checkpoint's step and token count.
        self._started, self._first_step, self._first_tokens = time.monotonic(), state.global_step, state.num_input_tokens_seen

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self._loss = float(logs["loss"])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        done = state.global_step - self._first_step
        per_step = elapsed / max(done, 1)
        self._on_progress(TrainingProgress(
            phase=self._phase, step=state.global_step, steps=state.max_steps, loss=self._loss,
            tokens_per_s=(state.num_input_tokens_seen - self._first_tokens) / elapsed if done else 0.0,
            seconds_left=per_step * (state.max_steps - state.global_step),
        ))
        if self._stop.is_set() and state.global_step < state.max_steps:
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control
