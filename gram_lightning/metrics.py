"""Evaluation metrics of sampled solutions, summed across DDP ranks by torchmetrics."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from gram_lightning.losses import IGNORE_LABEL
from gram_lightning.samples import Samples


class SolveMetrics(Metric):
    """What the N samples per evaluated input found, and how good the chosen one is.

    - sample_acc: fraction of all N x inputs samples that are solutions: single-shot accuracy, estimated from
      every sample (the paper's N-Queens and Sudoku accuracy).
    - exact_acc: the chosen prediction (the vote, or another selection rule) is a solution (the task's checker:
      satisfies every constraint and keeps the givens; without a checker, equals the label).
    - exact_match: the chosen prediction equals the label token for token.
    - token_acc: fraction of non-PAD tokens of the chosen prediction equal to the label.
    - pass_at_n: at least one of the N samples is a solution.
    - distinct_solutions: mean number of distinct solutions among the N samples.
    - coverage: distinct solutions found / solutions the input has (only where that count is known).
    - conflict_edges: constraint violations of the chosen predictions (graph coloring: edges whose ends share a
      colour), summed over the evaluated inputs; sample_conflict_edges: those of a single sample (the mean over
      the N samples of each input), summed over the inputs: the paper's graph-coloring figure. Both also per
      input (`*_per_input`); only when the task counts violations.

    Distinct solutions are told apart by the samples' canonical keys (`Samples.keys`).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("exact", "exact_match", "token_correct", "token_total", "samples_solved", "samples", "any_solved",
                     "distinct", "coverage", "coverage_count", "conflicts", "sample_conflicts", "conflict_count", "count"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, s: Samples, labels: torch.Tensor, num_solutions: torch.Tensor | None = None) -> None:
        """s: the scored samples of B inputs; labels (B, L); num_solutions (B,), 0 where unknown."""
        chosen, mask = s.chosen, labels != IGNORE_LABEL
        self.exact += s.chosen_ok.sum()
        self.exact_match += ((chosen == labels) | ~mask).all(-1).sum()
        self.token_correct += ((chosen == labels) & mask).sum()
        self.token_total += mask.sum()
        self.samples_solved += s.is_solution.sum()
        self.samples += s.is_solution.numel()
        self.any_solved += s.is_solution.any(-1).sum()
        distinct = s.distinct_solutions  # (B,)
        self.distinct += distinct.sum()
        if num_solutions is not None:
            known = num_solutions > 0
            self.coverage += (distinct[known] / num_solutions[known]).sum()
            self.coverage_count += known.sum()
        if s.conflicts is not None:
            conflicts = s.conflicts.double()  # (B, N)
            self.conflicts += conflicts.gather(1, s.chosen_index[:, None]).sum()
            self.sample_conflicts += conflicts.mean(1).sum()
            self.conflict_count += conflicts.shape[0]
        self.count += chosen.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp(min=1)
        out = {
            "exact_acc": self.exact / n,
            "sample_acc": self.samples_solved / self.samples.clamp(min=1),
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
            out["sample_conflict_edges"] = self.sample_conflicts
            out["sample_conflict_edges_per_input"] = self.sample_conflicts / self.conflict_count
        return {k: v.float() for k, v in out.items()}
