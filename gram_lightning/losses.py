"""Loss terms of one supervision step: reconstruction, balanced KL, halting and value (LPRM) losses."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from gram_lightning.model import Gaussian

IGNORE_LABEL = 0  # PAD


def _stablemax_log_probs(logits: torch.Tensor) -> torch.Tensor:
    # TRM's stablemax: s(x) = 1/(1-x) for x < 0, x + 1 otherwise; in float64 as TRM does.
    # The clamp matters: torch.where differentiates both branches, and 1/(1-x) at a logit of exactly
    # 1.0 is inf, whose zeroed gradient is NaN (it killed a demo run after 1,700 steps).
    x = logits.double()
    s = torch.where(x < 0, 1 / (1 - x.clamp(max=0)), x + 1)
    return torch.log(s / s.sum(dim=-1, keepdim=True))


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, kind: Literal["stablemax", "softmax"] = "stablemax") -> torch.Tensor:
    """Per-token cross-entropy (B, L); PAD positions get 0."""
    if kind == "stablemax":
        log_probs = _stablemax_log_probs(logits)
    elif kind == "softmax":
        log_probs = F.log_softmax(logits.float(), dim=-1)
    else:
        raise ValueError(f"loss kind must be 'stablemax' or 'softmax', got {kind!r}")
    mask = labels != IGNORE_LABEL
    nll = -log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(mask, nll, torch.zeros_like(nll)).float()


def mean_over_tokens(per_token: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the non-PAD tokens of each row: (B, L) -> (B,)."""
    mask = (labels != IGNORE_LABEL).float()
    return (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)


def gaussian_kl(q: Gaussian, p: Gaussian) -> torch.Tensor:
    """KL(q || p) of diagonal Gaussians, summed over the latent width: (B, L, D) -> (B, L)."""
    var_ratio = (q.std / p.std).pow(2)
    mean_term = ((q.mean - p.mean) / p.std).pow(2)
    return 0.5 * (var_ratio + mean_term - 1 - var_ratio.log()).sum(-1)


def balanced_kl(q: Gaussian, p: Gaussian, balance: float = 0.8) -> torch.Tensor:
    """Dreamer-style KL balancing: balance * KL(sg(q) || p) + (1 - balance) * KL(q || sg(p)).

    The value equals KL(q || p); only the gradient split changes: most of it trains the prior
    towards the posterior rather than the posterior towards the prior.
    """
    sg = lambda g: Gaussian(g.mean.detach(), g.std.detach())  # noqa: E731
    return balance * gaussian_kl(sg(q), p) + (1 - balance) * gaussian_kl(q, sg(p))


def balanced_mean_distance(q: Gaussian, p: Gaussian, balance: float = 0.8) -> torch.Tensor:
    """The "mean only" ablation's KL: unit-variance Gaussians, so 0.5 * ||mu_q - mu_p||^2, balanced."""
    half_sq = lambda a, b: 0.5 * (a - b).pow(2).sum(-1)  # noqa: E731
    return balance * half_sq(q.mean.detach(), p.mean) + (1 - balance) * half_sq(q.mean, p.mean.detach())


def halt_loss(halt_logits: torch.Tensor, is_correct: torch.Tensor) -> torch.Tensor:
    """BCE of the halt head against "the whole prediction is right": (B,) -> (B,)."""
    return F.binary_cross_entropy_with_logits(halt_logits.float(), is_correct.float(), reduction="none")


def value_loss(value: torch.Tensor, token_accuracy: torch.Tensor) -> torch.Tensor:
    """LPRM regression of the predicted final token accuracy: (B,) -> (B,)."""
    return (value.float() - token_accuracy.float()).pow(2)
