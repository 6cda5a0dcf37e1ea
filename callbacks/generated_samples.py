"""`gram predict` on an unconditional task: the samples as files a person can look at, with their metrics."""

from __future__ import annotations

import io
import math

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from callbacks.run_files import run_file
from gram_lightning.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from gram_lightning.render import tile
from gram_lightning.sampling import without_padding


class GeneratedSamplesWriter(L.Callback):
    """Writes, in the run's log dir, for tasks with `Task.generation_metrics` (unconditional Sudoku, MNIST):

    - `samples.png`: the first `grid_size` samples, drawn by `Task.render` (where the task has pictures).
    - `samples.txt`: every sample of rank 0 as text, for tasks whose `Task.format` writes them (Sudoku boards).
    - `sample_metrics.json`: the generation metrics over all samples of all ranks (validity / uniqueness,
      FID / IS), with the sampling settings (`--model.num_steps` is the sampling depth).

    The number of samples is the size of the predict split (the test split: `--data.num_test_puzzles`,
    `--data.num_test_images`). Other tasks are left to `predictions.jsonl`.

    Args:
        grid_size: Samples shown in samples.png.
        prefix: File name of the picture and the text, without its extension.
        metrics_filename: File name of the metrics.
    """

    def __init__(self, grid_size: int = 64, prefix: str = "samples", metrics_filename: str = "sample_metrics.json"):
        if grid_size < 1:
            raise ValueError(f"GeneratedSamplesWriter: grid_size must be >= 1, got {grid_size}")
        self.grid_size, self.prefix, self.metrics_filename = grid_size, prefix, metrics_filename
        self.metric = None
        self.samples: list[torch.Tensor] = []
        self.inputs: list[torch.Tensor] = []

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.metric = pl_module.task.generation_metrics()
        if self.metric is not None:
            self.metric.to(pl_module.device)
        self.samples, self.inputs = [], []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.metric is None or outputs is None:  # no metric, or a batch of DDP padding rows only
            return
        batch = without_padding(batch)
        self.metric.update(batch, outputs["chosen"])
        self.samples.append(outputs["chosen"].cpu())
        self.inputs.append(batch["inputs"].cpu())

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.metric is None:
            return
        paths = {"png": run_file(trainer, f"{self.prefix}.png"), "txt": run_file(trainer, f"{self.prefix}.txt"),
                 "json": run_file(trainer, self.metrics_filename)}
        metrics = {k: float(v) for k, v in self.metric.compute().items()}  # a collective under DDP
        if not trainer.is_global_zero:
            return
        task = pl_module.task
        samples, inputs = torch.cat(self.samples), torch.cat(self.inputs)
        atomic_write_json(paths["json"], {"metrics": metrics, "num_samples": len(samples),
                                          "settings": pl_module.inference_settings(), "ckpt_path": trainer.ckpt_path})
        shown = min(self.grid_size, len(samples))
        picture = samples_png(task.render, inputs[:shown], samples[:shown])
        if picture is not None:
            atomic_write_bytes(paths["png"], picture)
        texts = [task.format(s) for s in samples]
        if texts and texts[0] is not None:
            atomic_write_text(paths["txt"], "\n\n".join(texts) + "\n")
        rank_zero_info(f"{len(samples)} samples: {metrics}; written to {paths['json'].parent}")


def samples_png(render, inputs: torch.Tensor, samples: torch.Tensor) -> bytes | None:
    """A square-ish grid of rendered samples (K, L) for the inputs (K, L_in), as PNG file bytes; None when
    `render` (`Task.render`) draws nothing."""
    per_row = math.ceil(math.sqrt(len(samples)))
    images = [render(x, y) for x, y in zip(inputs, samples)]
    if not images or images[0] is None:
        return None
    return png_bytes(tile([images[i : i + per_row] for i in range(0, len(images), per_row)]))


def png_bytes(image: torch.Tensor) -> bytes:
    """(3, H, W) floats in [0, 1] -> PNG file bytes."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
