"""A candidate against the version it would replace, on the export's test split, in one run.

Every version is scored on the same rows by the same code, with the base loaded once and every
adapter attached before the first forward pass (bitsandbytes may repack 4-bit weights on that
pass, after which loading another adapter corrupts them: feedback-loop notes). The measures are
the trainers' own aims on data they never saw:

- SFT rows: held-out loss, the mean negative log-likelihood per answer token (lower is better);
- DPO pairs: the share where the version gives the chosen answer a higher log-probability than
  the rejected one, and the mean margin (higher is better);
- KTO rows: mean log-probability per token of 👍 answers minus that of 👎 ones (higher is better).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.loading import load_model, native_bf16, pick_device
from generation.model_source import ModelSource
from generation.training.config import TrainingData

MAX_TEST_ROWS = 200  # per format: enough to rank versions, bounded time
BASE = "base"
MEASURES = {  # measure → (format, how it reads, higher is better)
    "sft_loss": ("sft", "held-out loss per answer token", False),
    "dpo_accuracy": ("dpo", "share of pairs ranked as the team did", True),
    "dpo_margin": ("dpo", "mean log-probability margin, chosen − rejected", True),
    "kto_gap": ("kto", "log-probability per token, 👍 − 👎 answers", True),
}


@dataclass(frozen=True)
class Evaluation:
    rows: dict[str, int]  # test rows scored, per format
    scores: dict[str, dict[str, float]]  # version → measure → value

    def table(self) -> str:
        versions = list(self.scores)
        measures = [name for name, (fmt, _, _) in MEASURES.items() if self.rows.get(fmt)]
        if not measures:
            return "no test rows to evaluate on (the export's test split is empty)"
        lines = [f"| measure | rows | {' | '.join(versions)} |", f"| --- | ---: |{' ---: |' * len(versions)}"]
        for name in measures:
            fmt, what, higher = MEASURES[name]
            cells = " | ".join(f"{self.scores[version][name]:.3f}" for version in versions)
            lines.append(f"| {what} ({'higher' if higher else 'lower'} is better) | {self.rows[fmt]} | {cells} |")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "scores": self.scores}


def evaluate(base: ModelSource, adapters: Mapping[str, Path], data: TrainingData, *, device: str = "auto") -> Evaluation:
    """Score the base and each named adapter on `data`'s test split; blocks (run it off the event loop)."""
    import torch
    from peft import PeftModel

    device = pick_device(device)
    loaded = load_model(base, "nf4", device, bf16_prefill=False,
                        compute_dtype="bfloat16" if native_bf16(device) else "float32")
    model: Any = loaded.model
    for index, (name, folder) in enumerate(adapters.items()):
        if index == 0:
            model = PeftModel.from_pretrained(model, str(folder), adapter_name=name)
        else:
            model.load_adapter(str(folder), adapter_name=name)
    model.eval()
    rows = {fmt: data.rows(fmt, "test")[:MAX_TEST_ROWS] for fmt in ("sft", "dpo", "kto")}
    scorer = _Scorer(model, loaded.tokenizer)
    scores: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for version in (BASE, *adapters):
            if version == BASE:
                context: Any = model.disable_adapter() if adapters else nullcontext()
            else:
                model.set_adapter(version)
                context = nullcontext()
            with context:
                scores[version] = scorer.scores(rows)
    return Evaluation(rows={fmt: len(found) for fmt, found in rows.items()}, scores=scores)


class _Scorer:
    def __init__(self, model: Any, tokenizer: Any) -> None:
        self._model, self._tokenizer = model, tokenizer

    def scores(self, rows: Mapping[str, list[dict[str, Any]]]) -> dict[str, float]:
        result: dict[str, float] = {}
        if rows["sft"]:
            totals = [self._log_prob(row["messages"][:-1], row["messages"][-1]["content"]) for row in rows["sft"]]
            result["sft_loss"] = -sum(total for total, _ in totals) / max(sum(count for _, count in totals), 1)
        if rows["dpo"]:
            margins = [self._log_prob(row["prompt"], row["chosen"][0]["content"])[0]
                       - self._log_prob(row["prompt"], row["rejected"][0]["content"])[0] for row in rows["dpo"]]
            result["dpo_accuracy"] = sum(margin > 0 for margin in margins) / len(margins)
            result["dpo_margin"] = sum(margins) / len(margins)
        if rows["kto"]:
            per_token = {True: [], False: []}  # type: dict[bool, list[float]]
            for row in rows["kto"]:
                total, count = self._log_prob(row["prompt"], row["completion"][0]["content"])
                per_token[bool(row["label"])].append(total / max(count, 1))
            if per_token[True] and per_token[False]:
                result["kto_gap"] = (sum(per_token[True]) / len(per_token[True])
                                     - sum(per_token[False]) / len(per_token[False]))
        return result

    def _log_prob(self, prompt: list[dict[str, str]], answer: str) -> tuple[float, int]:
        """Sum of the answer tokens' log-probabilities after the chat-formatted prompt, and their count."""
        import torch

        prompt_ids = self._tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                         return_dict=False)
        full_ids = self._tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}],
                                                       tokenize=True, return_dict=False)
        ids = torch.tensor([list(full_ids)], device=self._model.device)
        logits = self._model(input_ids=ids).logits[0, :-1].float()
        targets = ids[0, 1:]
        log_probs = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
        answer_part = log_probs[len(prompt_ids) - 1:]
        return float(answer_part.sum()), int(answer_part.numel())
