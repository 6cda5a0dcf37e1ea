"""Depth x width scaling of a trained model: accuracy and coverage over a grid of supervision steps and
numbers of sampled trajectories, overall and by how many valid solutions an input has."""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass

import torch

from gram_lightning.atomic import atomic_write_bytes
from gram_lightning.module import GRAMModule
from gram_lightning.selection import SelectionRule


@dataclass
class ScalingResult:
    """Per-input outcomes, keyed by (N, steps): exact (the chosen output is valid), passed (any sample valid),
    sample_acc (the fraction of the N samples that are valid), distinct valid solutions found, conflicts of the
    chosen output and the mean conflicts of one sample (tasks that count them), and each input's number of valid
    solutions (0 where unknown)."""

    exact: dict[tuple[int, int], torch.Tensor]
    passed: dict[tuple[int, int], torch.Tensor]
    sample_acc: dict[tuple[int, int], torch.Tensor]
    distinct: dict[tuple[int, int], torch.Tensor]
    num_solutions: torch.Tensor
    conflicts: dict[tuple[int, int], torch.Tensor]
    sample_conflicts: dict[tuple[int, int], torch.Tensor]

    def table(self) -> list[dict]:
        """One row per (N, steps): sample_acc, exact_acc, pass_at_n, distinct_solutions, coverage, and
        conflict_edges / sample_conflict_edges summed over the inputs (SolveMetrics' definitions)."""
        rows = []
        known = self.num_solutions > 0
        for key in sorted(self.exact):
            width, steps = key
            row = {"N": width, "steps": steps, "inputs": int(self.exact[key].numel()),
                   "sample_acc": self.sample_acc[key].float().mean().item(),
                   "exact_acc": self.exact[key].float().mean().item(),
                   "pass_at_n": self.passed[key].float().mean().item(),
                   "distinct_solutions": self.distinct[key].float().mean().item()}
            if known.any():
                row["coverage"] = (self.distinct[key][known] / self.num_solutions[known]).mean().item()
            if key in self.conflicts:
                row["conflict_edges"] = int(self.conflicts[key].sum())
                row["sample_conflict_edges"] = self.sample_conflicts[key].double().sum().item()
            rows.append(row)
        return rows

    def by_num_solutions(self, steps: int, bins: list[int]) -> list[dict]:
        """Rows per (N, bin of the number of valid solutions) at depth `steps`; bins are lower edges."""
        rows = []
        edges = [*bins, float("inf")]
        for (width, s), exact in sorted(self.exact.items()):
            if s != steps:
                continue
            for lo, hi in zip(edges[:-1], edges[1:]):
                mask = (self.num_solutions >= lo) & (self.num_solutions < hi)
                if not mask.any():
                    continue
                cov = (self.distinct[(width, s)][mask] / self.num_solutions[mask]).mean().item()
                label = f"{lo}" if hi == lo + 1 else (f"{lo}+" if hi == float("inf") else f"{lo}-{int(hi) - 1}")
                rows.append({"N": width, "steps": s, "num_solutions": label, "inputs": int(mask.sum()),
                             "sample_acc": self.sample_acc[(width, s)][mask].float().mean().item(),
                             "exact_acc": exact[mask].float().mean().item(), "coverage": cov})
        return rows


@torch.no_grad()
def evaluate_grid(module: GRAMModule, batches, widths: list[int], steps: list[int], selection: SelectionRule = "vote") -> ScalingResult:
    """For each width N, sample N trajectories per input in one batch (the module's sampler), roll them out to
    max(steps) once and score the outputs at every depth of `steps` on the way (depth costs nothing extra)."""
    out: dict[str, dict] = {k: defaultdict(list) for k in ("exact", "passed", "sample_acc", "distinct", "conflicts", "sample_conflicts")}
    counts = []
    was_training = module.training
    module.eval()
    try:
        with module.inference_rng():
            for batch in batches:
                batch = {k: v.to(module.device) for k, v in batch.items()}
                B = batch["inputs"].shape[0]
                counts.append(batch.get("num_solutions", torch.zeros(B, dtype=torch.long, device=module.device)).cpu())
                for width in widths:
                    for depth, s in module.sample_depths(batch, width, steps, selection):
                        key = (width, depth)
                        out["exact"][key].append(s.chosen_ok.cpu())
                        out["passed"][key].append(s.is_solution.any(1).cpu())
                        out["sample_acc"][key].append(s.is_solution.float().mean(1).cpu())
                        out["distinct"][key].append(s.distinct_solutions.cpu())
                        if s.conflicts is not None:
                            out["conflicts"][key].append(s.conflicts.gather(1, s.chosen_index[:, None]).squeeze(1).cpu())
                            out["sample_conflicts"][key].append(s.conflicts.float().mean(1).cpu())
    finally:
        module.train(was_training)
    cat = {name: {k: torch.cat(v) for k, v in d.items()} for name, d in out.items()}
    return ScalingResult(cat["exact"], cat["passed"], cat["sample_acc"], cat["distinct"], torch.cat(counts),
                         cat["conflicts"], cat["sample_conflicts"])


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
