"""Depth x width scaling of a trained model: accuracy and coverage over a grid of supervision steps and
numbers of sampled trajectories, overall and by how many valid solutions an input has."""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import torch

from gram_lightning.atomic import atomic_write_bytes
from gram_lightning.metrics import outcomes, summary, totals
from gram_lightning.base_module import BaseModule
from gram_lightning.sampling import sample_depths
from gram_lightning.selection import SelectionRule


@dataclass
class ScalingResult:
    """Each input's outcomes (`metrics.outcomes`: (inputs,) tensors) keyed by (N, steps), each input's number of
    valid solutions (0 where unknown), and the name the task gives its violations."""

    outcomes: dict[tuple[int, int], dict[str, torch.Tensor]]
    num_solutions: torch.Tensor
    violations_name: str = "violations"

    def _row(self, key: tuple[int, int], rows: torch.Tensor | None = None) -> dict:
        """The SolveMetrics values of the inputs `rows` (a mask; None: all) at key (N, steps)."""
        per_input = {k: v if rows is None else v[rows] for k, v in self.outcomes[key].items()}
        values = summary(totals(per_input), self.violations_name)
        return {"N": key[0], "steps": key[1], "inputs": per_input["exact"].numel(), **{k: v.item() for k, v in values.items()}}

    def table(self) -> list[dict]:
        """One row per (N, steps): the inputs evaluated and their SolveMetrics."""
        return [self._row(key) for key in sorted(self.outcomes)]

    def by_num_solutions(self, steps: int, bins: list[int]) -> list[dict]:
        """Rows per (N, bin of the number of valid solutions) at depth `steps`; bins are lower edges."""
        rows = []
        edges = [*bins, float("inf")]
        for key in sorted(k for k in self.outcomes if k[1] == steps):
            for lo, hi in zip(edges[:-1], edges[1:]):
                mask = (self.num_solutions >= lo) & (self.num_solutions < hi)
                if not mask.any():
                    continue
                label = f"{lo}" if hi == lo + 1 else (f"{lo}+" if hi == float("inf") else f"{lo}-{int(hi) - 1}")
                row = self._row(key, mask)
                rows.append({"N": row.pop("N"), "steps": row.pop("steps"), "num_solutions": label, **row})
        return rows


@torch.no_grad()
def evaluate_grid(module: BaseModule, batches, widths: list[int], steps: list[int], selection: SelectionRule = "vote") -> ScalingResult:
    """For each width N, sample N trajectories per input in one batch (`sampling.sample_depths`), roll them out to
    max(steps) once and score the outputs at every depth of `steps` on the way (depth costs nothing extra)."""
    out: dict[tuple[int, int], dict[str, list[torch.Tensor]]] = defaultdict(lambda: defaultdict(list))
    counts = []
    with module.evaluating():
        for batch in batches:
            batch = {k: v.to(module.device) for k, v in batch.items()}
            B = batch["inputs"].shape[0]
            solutions = batch.get("num_solutions", torch.zeros(B, dtype=torch.long, device=module.device))
            counts.append(solutions.cpu())
            for width in widths:
                for depth, s in sample_depths(module, batch, width, steps, selection):
                    for name, value in outcomes(s, batch["labels"], solutions).items():
                        out[width, depth][name].append(value.cpu())
    per_input = {key: {name: torch.cat(values) for name, values in d.items()} for key, d in out.items()}
    return ScalingResult(per_input, torch.cat(counts), module.task.violations_name)


InferenceResidual = Literal["sampled", "mean", "none"]
# The net's noise mode that rolls out each residual.
_NOISE_MODE_OF_RESIDUAL: dict[str, str] = {"sampled": "learned", "mean": "mean_only", "none": "none"}


def set_inference_residual(module: BaseModule, residual: InferenceResidual) -> None:
    """What a GRAM with a learned prior adds to u at inference: a draw from the prior, as GRAM trains ("sampled");
    the prior's mean alone, guidance without noise ("mean"); or nothing, u alone ("none"). The two ablations say
    how much of a trained model's answers the residual carries: with "none" what remains is the core's.
    Raises ValueError for a model without a learned prior (TRM, fixed noise, the baselines)."""
    if residual not in _NOISE_MODE_OF_RESIDUAL:
        raise ValueError(f"residual must be one of {', '.join(_NOISE_MODE_OF_RESIDUAL)}; got {residual!r}")
    net = getattr(module, "net", None)
    if getattr(net, "prior", None) is None:
        raise ValueError(f"the residual can be set only for a GRAM with a learned prior; this model has "
                         f"{module.description}")
    net.noise_mode = _NOISE_MODE_OF_RESIDUAL[residual]


def plot(result: ScalingResult, path, title: str, trained_steps: int | None = None, bins: list[int] | None = None) -> None:
    """Accuracy and coverage against supervision steps (a line per N), and against the number of valid
    solutions of the input at the deepest step. Written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.table()
    widths = sorted({r["N"] for r in rows})
    has_cov = "coverage" in rows[0]
    panels = 3 if has_cov else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.6), squeeze=False)
    axes = axes[0]
    for width in widths:
        mine = [r for r in rows if r["N"] == width]
        axes[0].plot([r["steps"] for r in mine], [100 * r["exact_acc"] for r in mine], marker="o", label=f"N={width} voted")
        if width == widths[-1]:  # single-shot accuracy does not depend on N: one line, from the most samples
            axes[0].plot([r["steps"] for r in mine], [100 * r["sample_acc"] for r in mine], marker="x", ls="--",
                         color="black", label="single sample")
        if has_cov:
            axes[1].plot([r["steps"] for r in mine], [100 * r["coverage"] for r in mine], marker="o", label=f"N={width}")
    for ax, name in zip(axes[:2], ("accuracy (%)", "coverage (%)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("supervision steps")
        ax.set_ylabel(name)
        if trained_steps:
            ax.axvline(trained_steps, color="grey", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
        ax.legend()
    if has_cov:
        deepest = max(r["steps"] for r in rows)
        by = result.by_num_solutions(deepest, bins or [1, 2, 3, 5, 9, 17])
        labels = list(dict.fromkeys(r["num_solutions"] for r in by))
        for width in widths:
            mine = {r["num_solutions"]: r for r in by if r["N"] == width}
            axes[2].plot(range(len(labels)), [100 * mine[b]["coverage"] if b in mine else float("nan") for b in labels],
                         marker="o", label=f"N={width} coverage")
        axes[2].set_xticks(range(len(labels)), labels)
        axes[2].set_xlabel(f"valid solutions of the input ({deepest} steps)")
        axes[2].set_ylabel("coverage (%)")
        axes[2].grid(alpha=0.3)
        axes[2].legend()
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
