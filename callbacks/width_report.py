"""After training, measures width scaling on the test set and prints it as a table."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from rich.console import Console
from rich.table import Table

from callbacks.run_files import run_file
from gram_lightning.atomic import atomic_write_json
from gram_lightning.metrics import SolveMetrics


class WidthScalingReport(L.Callback):
    """Evaluates the final (EMA) weights at each width N with each selection rule, on the test split.

    All rules of one width share the same N samples, so their rows differ only by the choice.

    Args:
        widths: Numbers of sampled trajectories per puzzle.
        selections: Selection rules applied for N > 1 (N = 1 needs none).
        num_steps: Depth of each sample (default: the model's, GRAM's N_sup).
        filename: JSON file written in the log dir.
    """

    def __init__(self, widths: list[int] = [1, 8], selections: list[str] = ["vote", "lprm"], num_steps: int | None = None,
                 filename: str = "width_scaling.json"):
        self.widths, self.selections, self.num_steps, self.filename = widths, selections, num_steps, filename

    @torch.no_grad()
    def measure(self, trainer: L.Trainer, pl_module) -> list[dict]:
        datamodule = trainer.datamodule
        datamodule.setup("test")
        rows = []
        with pl_module.evaluating():
            for width in self.widths:
                # A model without value and halt heads (the generative baselines) has no lprm or halt choice.
                rules = ["first"] if width == 1 else [r for r in self.selections
                                                      if pl_module.has_value_head or r not in ("lprm", "halt")]
                name = pl_module.task.violations_name
                metrics = {rule: SolveMetrics(name, sync_on_compute=False).to(pl_module.device) for rule in rules}
                for batch in datamodule.test_dataloader():
                    batch = {k: v.to(pl_module.device) for k, v in batch.items()}
                    s = pl_module.sample(batch, width, self.num_steps, "first")
                    for rule, metric in metrics.items():
                        metric.update(s.reselect(rule), batch)
                for rule, metric in metrics.items():
                    rows.append({"N": width, "selection": rule if width > 1 else "-",
                                 **{k: float(v) for k, v in metric.compute().items()}})
        return rows

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = run_file(trainer, self.filename)  # every rank asks for it, then only rank 0 measures
        if trainer.is_global_zero:
            self.report(trainer, pl_module, path)
        # Under DDP the other ranks wait here: leaving early breaks rank 0's next collective.
        trainer.strategy.barrier("width_scaling_report")

    def report(self, trainer: L.Trainer, pl_module: L.LightningModule, path: Path) -> None:
        rows = self.measure(trainer, pl_module)
        table = Table(title=f"Width scaling on the test split ({pl_module.description}, "
                            f"{self.num_steps or pl_module.default_depth} {pl_module.depth_name})")
        for column in ("N", "selection", "single-sample acc", "exact acc", "pass@N", "distinct solutions / puzzle", "coverage"):
            table.add_column(column, justify="right")
        for r in rows:
            coverage = f"{100 * r['coverage']:.1f}%" if "coverage" in r else "-"
            table.add_row(str(r["N"]), r["selection"], f"{100 * r['sample_acc']:.1f}%", f"{100 * r['exact_acc']:.1f}%",
                          f"{100 * r['pass_at_n']:.1f}%", f"{r['distinct_solutions']:.2f}", coverage)
        Console().print(table)
        atomic_write_json(path, rows)
        rank_zero_info(f"width scaling written to {path}")
