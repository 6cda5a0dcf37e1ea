"""Writes ARC's voted answers after `gram test`: `predictions.jsonl` and an ARC Prize `submission.json`."""

from __future__ import annotations

import json

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from callbacks.run_files import run_file
from gram_lightning.atomic import atomic_write_json, atomic_write_text


class ARCPredictionsWriter(L.Callback):
    """For tasks with voting metrics (`Task.voting_metrics`: ARC), in the run's log dir:

    - `predictions.jsonl`: one line per test input, {"task", "test_index", "attempts" (the top_k answers as
      ARC grids, lists of rows of colours 0..9), "votes", "confidence", "correct"}.
    - `submission.json`: the ARC Prize format, {task id: [{"attempt_1": grid, "attempt_2": grid}, ...]}.

    Args:
        top_k: Answers kept per test input in predictions.jsonl.
        filename: File name of the ranked answers.
        submission_filename: File name of the submission.
    """

    def __init__(self, top_k: int = 2, filename: str = "predictions.jsonl", submission_filename: str = "submission.json"):
        if top_k < 1:
            raise ValueError(f"ARCPredictionsWriter: top_k must be >= 1, got {top_k}")
        self.top_k, self.filename, self.submission_filename = top_k, filename, submission_filename

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metric = pl_module.task_metric("voting", "test")
        if metric is None:
            return
        paths = run_file(trainer, self.filename), run_file(trainer, self.submission_filename)
        with metric.sync_context():  # a collective under DDP: every rank's votes
            rows, submission = metric.ranked_answers(self.top_k), metric.submission()
        if not trainer.is_global_zero:
            return
        atomic_write_text(paths[0], "".join(json.dumps(row) + "\n" for row in rows))
        atomic_write_json(paths[1], submission)
        rank_zero_info(f"ARC answers of {len(rows)} test inputs written to {paths[0]} and {paths[1].name}")
