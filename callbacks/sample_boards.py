"""Logs a picture of sampled outputs to TensorBoard after each validation."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from gram_lightning.render import GREEN, RED, tile, with_border


class SampleBoards(L.Callback):
    """After each validation, samples `num_samples` trajectories for the first `num_inputs` validation inputs
    and logs them as one image: a row per input, its label first (framed grey), then its samples left to right,
    framed green when the sample is a valid solution and red when not (grey for tasks without a checker, such as
    images, where the label is one real example rather than the answer). Needs a TensorBoard logger and a task whose
    `Task.render` draws a picture; otherwise it does nothing.

    The samples are drawn from the first validation batch while the validation loop runs, so they come from the
    weights validation scores: a weight-averaging callback (EMA) swaps its averaged weights in for the whole
    validation epoch and the raw ones back at its end, which may come before this callback's epoch-end hook. The
    picture is logged at the end of the epoch. The sanity check draws nothing.

    Args:
        num_inputs: Validation inputs shown (rows).
        num_samples: Sampled trajectories per input (columns).
        num_steps: Depth of each sample (default: the model's, GRAM's N_sup).
        tag: TensorBoard image tag.
    """

    def __init__(self, num_inputs: int = 4, num_samples: int = 8, num_steps: int | None = None, tag: str = "val/samples"):
        if num_inputs < 1 or num_samples < 1:
            raise ValueError("SampleBoards: num_inputs and num_samples must be >= 1")
        self.num_inputs, self.num_samples, self.num_steps, self.tag = num_inputs, num_samples, num_steps, tag
        self._image: torch.Tensor | None = None

    @staticmethod
    def _logger(trainer: L.Trainer) -> TensorBoardLogger | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)

    @torch.no_grad()
    def picture(self, trainer: L.Trainer, pl_module, batch: dict[str, Any]) -> torch.Tensor | None:
        """The image for the first `num_inputs` rows of `batch` (on the module's device), sampled with the
        module's current weights; None when the task draws no pictures.

        Args:
            trainer: The trainer.
            pl_module: The module whose `sample` draws the trajectories and whose task draws and judges them.
            batch: A validation batch of `inputs` and `labels` (other tensors are sliced alike).
        """
        task = pl_module.task
        batch = {k: v[: self.num_inputs] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        labels = [task.render(x.cpu(), y.cpu()) for x, y in zip(batch["inputs"], batch["labels"])]
        if labels[0] is None:
            return None
        with pl_module.inference_rng():
            s = pl_module.sample(batch, self.num_samples, self.num_steps, "first")
        rows = []
        for i, label in enumerate(labels):
            inputs = batch["inputs"][i].cpu()
            row = [with_border(label, torch.ones(3) * 0.4)]  # the label first
            for j in range(s.preds.shape[1]):
                frame = (GREEN if s.is_solution[i, j] else RED) if task.checks_answers else torch.ones(3) * 0.4
                row.append(with_border(task.render(inputs, s.preds[i, j].cpu()), frame))
            rows.append(row)
        return tile(rows)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._image = None

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if self._logger(trainer) is None:
            return
        image = self.picture(trainer, pl_module, batch)
        self._image = None if image is None else image.clamp(0, 1).cpu()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        image, self._image = self._image, None
        logger = self._logger(trainer)
        if image is None or logger is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        logger.experiment.add_image(self.tag, image, global_step=trainer.global_step)
