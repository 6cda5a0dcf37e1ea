"""Token draws from logits with given uniforms, so that a draw is a function of its uniform: the baselines' samples
then depend on (seed, input index, sample number) only (`keyed_noise.py`), and KV-cached decoding draws exactly
what uncached decoding draws."""

from __future__ import annotations

import torch


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """(..., V) logits -> log-probabilities after temperature, top-k and nucleus (top-p) filtering; filtered tokens
    get -inf."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Keep the smallest set whose mass reaches top_p: a token is dropped when the mass before it already does.
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits.log_softmax(-1)


def draw(log_probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draws: (..., V) log-probabilities and (...) uniforms in (0, 1) -> (...) token ids."""
    cdf = log_probs.exp().cumsum(-1)
    index = (cdf < u.unsqueeze(-1) * cdf[..., -1:]).sum(-1)
    return index.clamp(max=log_probs.shape[-1] - 1)
