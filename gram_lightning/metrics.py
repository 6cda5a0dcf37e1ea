"""What sampled outputs found, per input (`outcomes`) and summed over inputs and DDP ranks (`SolveMetrics`)."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from gram_lightning.losses import IGNORE_LABEL
from gram_lightning.samples import Samples


def outcomes(s: Samples, labels: torch.Tensor, num_solutions: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Each input's outcome, the terms `SolveMetrics` sums: (B,) tensors.

    Args:
        s: The scored samples of B inputs.
        labels: (B, L_out) tokens, PAD ignored.
        num_solutions: (B,) valid answers of each input, 0 where unknown; None: unknown for all.
    """
    chosen, mask = s.chosen, labels != IGNORE_LABEL
    distinct = s.distinct_solutions
    out = {
        "exact": s.chosen_ok,
        "exact_match": ((chosen == labels) | ~mask).all(-1),
        "token_correct": ((chosen == labels) & mask).sum(-1),
        "token_total": mask.sum(-1),
        "samples_solved": s.is_solution.sum(-1),
        "samples": torch.full_like(distinct, s.is_solution.shape[1]),
        "any_solved": s.is_solution.any(-1),
        "distinct": distinct,
    }
    if num_solutions is not None:
        out["known"] = num_solutions > 0
        out["coverage"] = distinct / num_solutions.clamp(min=1)
    if s.violations is not None:
        violations = s.violations.double()  # (B, N)
        out["violations"] = violations.gather(1, s.chosen_index[:, None]).squeeze(1)
        out["sample_violations"] = violations.mean(1)
    return out


# Outcomes summed over all inputs as they are.
COUNTED = ("exact", "exact_match", "token_correct", "token_total", "samples_solved", "samples", "any_solved", "distinct")
# The sums SolveMetrics keeps, over inputs and DDP ranks: what `summary` turns into its values.
TOTALS = (*COUNTED, "coverage", "coverage_count", "violations", "sample_violations", "violation_count", "count")


def totals(per_input: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The `outcomes` of some inputs summed into TOTALS (scalars, float64 but for coverage).

    Coverage and violations count only the inputs that have them: those with a known number of solutions, and
    tasks that count violations."""
    out = {name: per_input[name].double().sum() for name in COUNTED}
    zero = out["exact"].new_zeros(())
    known = per_input.get("known")
    # The ratios are float32 and so is a batch's sum; the metric accumulates batches in float64. Summing in float64
    # here would move the logged coverage in its last bits, so evaluations of one checkpoint would not compare exactly.
    out["coverage"] = per_input["coverage"][known].sum() if known is not None else zero
    out["coverage_count"] = known.double().sum() if known is not None else zero
    violations = per_input.get("violations")
    out["violations"] = violations.sum() if violations is not None else zero
    out["sample_violations"] = per_input["sample_violations"].sum() if violations is not None else zero
    out["violation_count"] = zero + (violations.shape[0] if violations is not None else 0)
    out["count"] = zero + per_input["exact"].shape[0]
    return out


def summary(sums: dict[str, torch.Tensor], violations_name: str = "violations") -> dict[str, torch.Tensor]:
    """The metrics of TOTALS (see `SolveMetrics`), float32 scalars."""
    n = sums["count"].clamp(min=1)
    out = {
        "exact_acc": sums["exact"] / n,
        "sample_acc": sums["samples_solved"] / sums["samples"].clamp(min=1),
        "exact_match": sums["exact_match"] / n,
        "token_acc": sums["token_correct"] / sums["token_total"].clamp(min=1),
        "pass_at_n": sums["any_solved"] / n,
        "distinct_solutions": sums["distinct"] / n,
    }
    if sums["coverage_count"] > 0:
        out["coverage"] = sums["coverage"] / sums["coverage_count"]
    if sums["violation_count"] > 0:
        name, count = violations_name, sums["violation_count"]
        out[name] = sums["violations"]
        out[f"{name}_per_input"] = sums["violations"] / count
        out[f"sample_{name}"] = sums["sample_violations"]
        out[f"sample_{name}_per_input"] = sums["sample_violations"] / count
    return {k: v.float() for k, v in out.items()}


class SolveMetrics(Metric):
    """What the N samples per evaluated input found, and how good the chosen one is.

    - sample_acc: fraction of all N x inputs samples that are solutions: single-shot accuracy, estimated from
      every sample (the paper's N-Queens and Sudoku accuracy).
    - exact_acc: the chosen prediction (the vote, or another selection rule) is a solution (`Task.check`:
      satisfies every constraint and keeps the givens; without a checker, equals the label).
    - exact_match: the chosen prediction equals the label token for token.
    - token_acc: fraction of non-PAD tokens of the chosen prediction equal to the label.
    - pass_at_n: at least one of the N samples is a solution.
    - distinct_solutions: mean number of distinct solutions among the N samples.
    - coverage: distinct solutions found / solutions the input has (only where that count is known).
    - `<violations_name>`: constraint violations of the chosen predictions (`Task.violations`; graph coloring's
      conflict_edges), summed over the evaluated inputs; `sample_<violations_name>`: those of a single sample (the
      mean over the N samples of each input), summed over the inputs: the paper's graph-coloring figure. Both also
      per input (`*_per_input`); only when the task counts violations.

    Distinct solutions are told apart by the samples' canonical keys (`Samples.keys`).

    Args:
        violations_name: The name of the violations' values (`Task.violations_name`).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, violations_name: str = "violations", **kwargs):
        super().__init__(**kwargs)
        self.violations_name = violations_name
        for name in TOTALS:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, s: Samples, batch: dict[str, torch.Tensor]) -> None:
        """s: the scored samples of a batch's B inputs; the batch's labels (B, L) and num_solutions (B,), if any."""
        for name, value in totals(outcomes(s, batch["labels"], batch.get("num_solutions"))).items():
            setattr(self, name, getattr(self, name) + value)

    def compute(self) -> dict[str, torch.Tensor]:
        return summary({name: getattr(self, name) for name in TOTALS}, self.violations_name)
