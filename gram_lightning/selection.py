"""Width scaling: pick one of N sampled predictions per input, batched on the device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

SelectionRule = Literal["vote", "lprm", "halt", "first"]
SELECTION_RULES = ("vote", "lprm", "halt", "first")


@dataclass
class Selection:
    index: torch.Tensor  # (B,) which sample was chosen
    output: torch.Tensor  # (B, L) the chosen prediction
    score: torch.Tensor  # (B,) the rule's score of the choice: vote share, LPRM value or halt probability


def identical_samples(preds: torch.Tensor) -> torch.Tensor:
    """(B, N, L) -> (B, N, N): [b, i, j] is True when samples i and j of row b are identical."""
    return (preds.unsqueeze(2) == preds.unsqueeze(1)).all(-1)


def vote_counts(preds: torch.Tensor) -> torch.Tensor:
    """(B, N, L) -> (B, N): how many of the N samples equal each sample (itself included)."""
    return identical_samples(preds).sum(-1)


def first_occurrences(preds: torch.Tensor) -> torch.Tensor:
    """(B, N, L) -> (B, N): True for the first sample of each group of identical samples."""
    same = identical_samples(preds)
    earlier = torch.ones_like(same[0], dtype=torch.bool).tril(diagonal=-1)  # (N, N): j < i
    return ~(same & earlier).any(-1)


def select(preds: torch.Tensor, rule: SelectionRule, value: torch.Tensor, halt_logits: torch.Tensor) -> Selection:
    """Choose among preds (B, N, L) given the value head (B, N) and halt logits (B, N).

    vote: the most frequent prediction, ties broken by the LPRM value. lprm: best-of-N by the value
    head. halt: the most confident halt head. first: sample 0 (N=1 behaviour).

    Pass canonical forms as `preds` where the task has them (graph colorings up to a renaming of the
    colours): the vote then counts one answer written in several labellings as one answer.
    """
    if rule == "vote":
        share = vote_counts(preds).float() / preds.shape[1]
        # value is in [0, 1] and shares differ by >= 1/N, so value * 0.5/N only breaks ties
        index = (share + value.float() * 0.5 / preds.shape[1]).argmax(-1)
        score = share.gather(1, index[:, None]).squeeze(1)
    elif rule == "lprm":
        index = value.argmax(-1)
        score = value.gather(1, index[:, None]).squeeze(1)
    elif rule == "halt":
        confidence = torch.sigmoid(halt_logits.float())
        index = confidence.argmax(-1)
        score = confidence.gather(1, index[:, None]).squeeze(1)
    elif rule == "first":
        index = torch.zeros(preds.shape[0], dtype=torch.long, device=preds.device)
        score = value[:, 0]
    else:
        raise ValueError(f"selection must be one of {SELECTION_RULES}, got {rule!r}")
    output = preds[torch.arange(preds.shape[0], device=preds.device), index]
    return Selection(index, output, score.float())
