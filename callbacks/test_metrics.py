"""Writes what `gram test` measured to `test_metrics.json` in the run's log dir."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from callbacks.run_files import run_file
from gram_lightning.atomic import atomic_write_json


class TestMetricsWriter(L.Callback):
    """Args:
        filename: File name inside the trainer's log dir.
    """

    def __init__(self, filename: str = "test_metrics.json"):
        self.filename = filename

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = run_file(trainer, self.filename)
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        settings = pl_module.inference_settings()
        atomic_write_json(path, {"metrics": metrics, "settings": settings, "ckpt_path": trainer.ckpt_path})
        rank_zero_info(f"test metrics written to {path}")
