"""Writes `gram predict` output to `predictions.jsonl`: one line per input, every sample and the choice."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from callbacks.run_files import run_file


class JsonlPredictionWriter(BasePredictionWriter):
    """Args:
        filename: File name inside the trainer's log dir (ranks > 0 of a DDP run add `.rank{r}`).
    """

    def __init__(self, filename: str = "predictions.jsonl"):
        super().__init__(write_interval="batch")
        self.filename = filename
        self._file = None

    def _path(self, trainer: L.Trainer) -> Path:
        name = self.filename if trainer.global_rank == 0 else f"{self.filename}.rank{trainer.global_rank}"
        return run_file(trainer, name)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path = self._path(trainer)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the final name and moved into place at the end, so a crash never leaves half a file there.
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._file = open(self._tmp, "w")

    def write_on_batch_end(self, trainer, pl_module, prediction: dict[str, Any] | None, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        if prediction is None:  # a batch of DDP padding rows only: nothing to write
            return
        to_list = lambda t: None if t is None else t.tolist()  # noqa: E731
        rows = {k: to_list(v) for k, v in prediction.items()}
        for i in range(len(rows["inputs"])):
            line = {
                "index": rows["index"][i],
                "inputs": rows["inputs"][i],
                "target": None if rows["labels"] is None else rows["labels"][i],
                "samples": rows["samples"][i],
                "chosen": rows["chosen"][i],
                "score": rows["score"][i],
                "chosen_index": rows["chosen_index"][i],
                "is_solution": rows["is_solution"][i],
                "value": rows["value"][i],
                "steps": rows["steps"][i],
            }
            self._file.write(json.dumps(line) + "\n")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._file.close()
        os.replace(self._tmp, self.path)
        rank_zero_info(f"predictions written to {self.path}")
