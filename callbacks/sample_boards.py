"""Logs a picture of sampled outputs to TensorBoard after each validation."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from gram_lightning.render import GREEN, RED, tile, with_border


class SampleBoards(L.Callback):
    """After each validation, samples `num_samples` trajectories for the first `num_inputs` validation inputs
    and logs them as one image: a row per input, its label first (framed grey), then its samples left to right,
    framed green when the sample is a valid solution and red when not (grey for tasks without a checker, such as
    images, where the label is one real example rather than the answer). Needs a TensorBoard logger and a DataModule with a
    `render(inputs, output) -> (3, H, W)` method; otherwise it does nothing.

    Args:
        num_inputs: Validation inputs shown (rows).
        num_samples: Sampled trajectories per input (columns).
        num_steps: Supervision steps per trajectory (default: the net's N_sup).
        tag: TensorBoard image tag.
    """

    def __init__(self, num_inputs: int = 4, num_samples: int = 8, num_steps: int | None = None, tag: str = "val/samples"):
        if num_inputs < 1 or num_samples < 1:
            raise ValueError("SampleBoards: num_inputs and num_samples must be >= 1")
        self.num_inputs, self.num_samples, self.num_steps, self.tag = num_inputs, num_samples, num_steps, tag

    @torch.no_grad()
    def picture(self, trainer: L.Trainer, pl_module) -> torch.Tensor | None:
        datamodule = trainer.datamodule
        render = getattr(datamodule, "render", None)
        if render is None:
            return None
        batch = next(iter(datamodule.val_dataloader()))
        batch = {k: v[: self.num_inputs].to(pl_module.device) for k, v in batch.items()}
        with pl_module.inference_rng():
            s = pl_module.sample(batch, self.num_samples, self.num_steps, "first")
        judged = getattr(datamodule, "check_solution", None) is not None
        rows = []
        for i in range(s.preds.shape[0]):
            inputs = batch["inputs"][i].cpu()
            row = [with_border(render(inputs, batch["labels"][i].cpu()), torch.ones(3) * 0.4)]  # the label first
            for j in range(s.preds.shape[1]):
                frame = (GREEN if s.is_solution[i, j] else RED) if judged else torch.ones(3) * 0.4
                row.append(with_border(render(inputs, s.preds[i, j].cpu()), frame))
            rows.append(row)
        return tile(rows)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None:
            return
        image = self.picture(trainer, pl_module)
        if image is not None:
            logger.experiment.add_image(self.tag, image.clamp(0, 1), global_step=trainer.global_step)
