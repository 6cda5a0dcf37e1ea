"""N sampled outputs per input, scored by the task, and the one a selection rule picks."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from gram_lightning.selection import SelectionRule, first_occurrences, select


@dataclass
class Samples:
    """The outputs of N trajectories per input at one depth, as the task judges them.

    `keys` are the outputs in the task's canonical form (`Task.canonical`; graph colorings with their colours
    renamed in order of first use): samples with equal keys are the same answer, for voting and for counting
    distinct solutions.
    """

    preds: torch.Tensor  # (B, N, L_out) tokens
    keys: torch.Tensor  # (B, N, L_out) canonical forms of preds
    value: torch.Tensor  # (B, N) LPRM value head
    halt_logits: torch.Tensor  # (B, N)
    is_solution: torch.Tensor  # (B, N) bool: the task's checker (or equality with the label)
    violations: torch.Tensor | None  # (B, N) violated constraints per sample (Task.violations), None if not counted
    steps: torch.Tensor  # (B, N) supervision steps run
    chosen_index: torch.Tensor  # (B,) the selected sample
    score: torch.Tensor  # (B,) the selection rule's score of its choice

    @property
    def chosen(self) -> torch.Tensor:
        """(B, L_out) the selected output."""
        return self.preds[torch.arange(self.preds.shape[0], device=self.preds.device), self.chosen_index]

    @property
    def chosen_ok(self) -> torch.Tensor:
        """(B,) the selected output is a solution."""
        return self.is_solution.gather(1, self.chosen_index[:, None]).squeeze(1)

    @property
    def distinct_solutions(self) -> torch.Tensor:
        """(B,) distinct valid answers among the N samples (canonical forms told apart)."""
        return (first_occurrences(self.keys) & self.is_solution).sum(-1)

    def reselect(self, rule: SelectionRule) -> "Samples":
        """The same samples with the choice made by another rule."""
        choice = select(self.keys, rule, self.value, self.halt_logits)
        return replace(self, chosen_index=choice.index, score=choice.score)
