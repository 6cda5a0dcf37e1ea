"""`gram predict` on an unconditional task: the samples as files a person can look at, with their metrics."""

from __future__ import annotations

import io
import math

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from callbacks.run_files import run_file
from gram_lightning.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from gram_lightning.module import without_padding
from gram_lightning.render import tile


class GeneratedSamplesWriter(L.Callback):
    """Writes, in the run's log dir, for DataModules with `generation_metrics` (unconditional Sudoku, MNIST):

    - `samples.png`: the first `grid_size` samples, rendered by the DataModule's `render`.
    - `samples.txt`: every sample of rank 0 as text, for tasks with `format_sample` (Sudoku boards).
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
        factory = getattr(trainer.datamodule, "generation_metrics", None)
        self.metric = factory() if factory is not None else None
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
        datamodule = trainer.datamodule
        samples, inputs = torch.cat(self.samples), torch.cat(self.inputs)
        settings = pl_module.inference_settings() if hasattr(pl_module, "inference_settings") else {}
        atomic_write_json(paths["json"], {"metrics": metrics, "num_samples": len(samples), "settings": settings,
                                          "ckpt_path": trainer.ckpt_path})
        render = getattr(datamodule, "render", None)
        if render is not None:
            shown = min(self.grid_size, len(samples))
            atomic_write_bytes(paths["png"], samples_png(render, inputs[:shown], samples[:shown]))
        format_sample = getattr(datamodule, "format_sample", None)
        if format_sample is not None:
            atomic_write_text(paths["txt"], "\n\n".join(format_sample(s) for s in samples) + "\n")
        rank_zero_info(f"{len(samples)} samples: {metrics}; written to {paths['json'].parent}")


def samples_png(render, inputs: torch.Tensor, samples: torch.Tensor) -> bytes:
    """A square-ish grid of rendered samples (K, L) for the inputs (K, L_in), as PNG file bytes."""
    per_row = math.ceil(math.sqrt(len(samples)))
    images = [render(x, y) for x, y in zip(inputs, samples)]
    return png_bytes(tile([images[i : i + per_row] for i in range(0, len(images), per_row)]))


def png_bytes(image: torch.Tensor) -> bytes:
    """(3, H, W) floats in [0, 1] -> PNG file bytes."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
