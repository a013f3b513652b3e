"""Per-request top-k, top-p and the draw for the batching manager without touching the whole vocabulary.

transformers' warpers each sort every row of scores: two sorts of 49,152 scores per draft per
step, ~35 ms each for 16 drafts on 2 cores, about a third of a decoding step; the draw
(`torch.multinomial`) then spends ~25 ms on the same rows. Top-k needs only the k largest scores
(`torch.topk`), and after top-k, top-p and the draw need only the scores top-k left. The
results, and the distribution drawn from, are the same; `use` chooses, for every manager
created afterwards, which run.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.generation.continuous_batching import cb_logits_processors, continuous_api, model_runner
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

# Beyond this many candidates in a row (top-k off or huge), a full sort is as good as any.
MAX_CANDIDATES = 1024


class TopKWithoutSort(cb_logits_processors.ContinuousBatchingTopKLogitsWarper):
    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        top_k = tensor_arg[: scores.size(0)].clamp(min=1, max=scores.size(-1)).to(torch.int64)
        largest = torch.topk(scores, int(top_k.max()), dim=-1).values  # [B, max k], descending
        thresholds = largest.gather(-1, (top_k - 1).unsqueeze(-1))  # each row's k-th largest
        return scores.masked_fill(scores < thresholds, self.filter_value)


class TopPWithoutSort(cb_logits_processors.ContinuousBatchingTopPLogitsWarper):
    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        candidates = int((scores != self.filter_value).sum(-1).max())
        if candidates > MAX_CANDIDATES:
            return super().__call__(scores, tensor_arg)
        top_p = tensor_arg[: scores.size(0)].view(dtype=torch.float32)
        values, indices = torch.topk(scores, candidates, dim=-1)
        ascending, indices = values.flip(-1), indices.flip(-1)
        # Filtered scores have probability 0, so they change neither the softmax nor the running sum.
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p).unsqueeze(-1)
        remove[..., -self.min_tokens_to_keep:] = False
        kept = ascending.masked_fill(remove, self.filter_value)
        return torch.full_like(scores, self.filter_value).scatter(-1, indices, kept)


class TopKSampler(model_runner.ModelRunner):
    """Draws each next token among the tokens the warpers left, instead of over the whole vocabulary."""

    def _sample(self, scores: torch.Tensor, output_ids: torch.Tensor) -> None:
        rows = scores[0]  # [drafts, vocabulary]
        candidates = int((rows != float("-inf")).sum(-1).max())
        if not self.do_sample or self.return_logprobs or candidates > MAX_CANDIDATES:
            return super()._sample(scores, output_ids)
        values, indices = torch.topk(rows, candidates, dim=-1)
        # Filtered tokens have probability 0 in the full softmax, so this is the same distribution.
        chosen = torch.multinomial(values.softmax(dim=-1), num_samples=1)
        next_tokens = indices.gather(-1, chosen).squeeze(-1)
        output_ids[0, : next_tokens.size(0)].copy_(next_tokens)
        return None


TRANSFORMERS_OWN = {
    TopKLogitsWarper: cb_logits_processors.ContinuousBatchingTopKLogitsWarper,
    TopPLogitsWarper: cb_logits_processors.ContinuousBatchingTopPLogitsWarper,
}
WITHOUT_SORT = {TopKLogitsWarper: TopKWithoutSort, TopPLogitsWarper: TopPWithoutSort}


def use(among_top_k: bool) -> None:
    """Pick the warpers and the sampler of batching managers created from now on (process-wide)."""
    processors: dict[Any, Any] = WITHOUT_SORT if among_top_k else TRANSFORMERS_OWN
    cb_logits_processors.CLASSIC_TO_CB_PROCESSORS_MAP.update(processors)  # transformers internals, see the module
    setattr(continuous_api, "ModelRunner", TopKSampler if among_top_k else model_runner.ModelRunner)
