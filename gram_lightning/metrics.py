"""Evaluation metrics of sampled solutions, summed across DDP ranks by torchmetrics."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from gram_lightning.losses import IGNORE_LABEL
from gram_lightning.selection import first_occurrences


class SolveMetrics(Metric):
    """Accuracy of the chosen prediction and what the N samples found, per evaluated input.

    - exact_acc: the chosen prediction is a solution (the task's checker: satisfies every constraint and
      keeps the givens; without a checker, equals the label).
    - exact_match: the chosen prediction equals the label token for token.
    - token_acc: fraction of non-PAD tokens of the chosen prediction equal to the label.
    - pass_at_n: at least one of the N samples is a solution.
    - distinct_solutions: mean number of distinct solutions among the N samples.
    - coverage: distinct solutions found / solutions the input has (only where that count is known).
    - conflict_edges, conflict_edges_per_input: constraint violations of the chosen predictions (graph
      coloring: edges whose ends share a color), summed over the evaluated inputs and averaged per input;
      only when the task counts them.

    Distinct solutions are told apart by `sample_keys` when given: a task whose outputs are equal up to a
    symmetry (colorings up to color permutation) passes canonical forms there.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("exact", "exact_match", "token_correct", "token_total", "any_solved", "distinct", "coverage", "coverage_count", "conflicts", "conflict_count", "count"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        samples: torch.Tensor,
        chosen: torch.Tensor,
        labels: torch.Tensor,
        sample_is_solution: torch.Tensor,
        chosen_is_solution: torch.Tensor,
        num_solutions: torch.Tensor | None = None,
        sample_keys: torch.Tensor | None = None,
        chosen_conflicts: torch.Tensor | None = None,
    ) -> None:
        """samples (B, N, L), chosen (B, L), labels (B, L), sample_is_solution (B, N), chosen_is_solution (B,),
        num_solutions (B,), sample_keys (B, N, L) and chosen_conflicts (B,), each optional."""
        mask = labels != IGNORE_LABEL
        self.exact += chosen_is_solution.sum()
        self.exact_match += ((chosen == labels) | ~mask).all(-1).sum()
        self.token_correct += ((chosen == labels) & mask).sum()
        self.token_total += mask.sum()
        self.any_solved += sample_is_solution.any(-1).sum()
        keys = samples if sample_keys is None else sample_keys
        distinct = (first_occurrences(keys) & sample_is_solution).sum(-1)  # (B,)
        self.distinct += distinct.sum()
        if num_solutions is not None:
            known = num_solutions > 0
            self.coverage += (distinct[known] / num_solutions[known]).sum()
            self.coverage_count += known.sum()
        if chosen_conflicts is not None:
            self.conflicts += chosen_conflicts.sum()
            self.conflict_count += chosen_conflicts.numel()
        self.count += chosen.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp(min=1)
        out = {
            "exact_acc": self.exact / n,
            "exact_match": self.exact_match / n,
            "token_acc": self.token_correct / self.token_total.clamp(min=1),
            "pass_at_n": self.any_solved / n,
            "distinct_solutions": self.distinct / n,
        }
        if self.coverage_count > 0:
            out["coverage"] = self.coverage / self.coverage_count
        if self.conflict_count > 0:
            out["conflict_edges"] = self.conflicts
            out["conflict_edges_per_input"] = self.conflicts / self.conflict_count
        return {k: v.float() for k, v in out.items()}
