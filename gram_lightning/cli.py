"""The `gram` command: Lightning's CLI with the data's shapes linked into the network."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from callbacks.arc_predictions import ARCPredictionsWriter
from callbacks.generated_samples import GeneratedSamplesWriter
from callbacks.prediction_writer import JsonlPredictionWriter
from callbacks.test_metrics import TestMetricsWriter
from gram_lightning.checkpoint_io import install_atomic_checkpoint_io
from gram_lightning.errors import GramError
from gram_lightning.module import GRAMModule


class GramCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        for name in ("vocab_size", "seq_len", "out_len", "num_puzzle_ids"):
            parser.link_arguments(f"data.{name}", f"model.net.init_args.{name}", apply_on="instantiate")
        # Always on: `gram test` leaves test_metrics.json and `gram predict` predictions.jsonl in the log dir.
        parser.add_lightning_class_args(TestMetricsWriter, "test_metrics_writer")
        parser.add_lightning_class_args(JsonlPredictionWriter, "prediction_writer")
        # Unconditional tasks: `gram predict` also writes samples.png / samples.txt / sample_metrics.json.
        parser.add_lightning_class_args(GeneratedSamplesWriter, "generated_samples_writer")
        # ARC: `gram test` also writes the voted answers (predictions.jsonl) and an ARC Prize submission.json.
        parser.add_lightning_class_args(ARCPredictionsWriter, "arc_predictions_writer")

    def instantiate_trainer(self, **kwargs):
        # Every run writes its checkpoints atomically (see checkpoint_io.py); a CheckpointIO plugin given with
        # --trainer.plugins is used as given instead.
        trainer = super().instantiate_trainer(**kwargs)
        install_atomic_checkpoint_io(trainer)
        return trainer

    def _parse_ckpt_path(self) -> None:
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path") if self.config.get("subcommand") else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc") and not Path(ckpt_path).is_file():
            sys.exit(f"gram: checkpoint not found: {ckpt_path}")
        try:
            super()._parse_ckpt_path()  # reads the checkpoint's hyperparameters
        except Exception as error:  # a truncated or foreign file fails in many ways deep inside torch
            first_line = (str(error).splitlines() or [""])[0]
            sys.exit(f"gram: cannot read checkpoint {ckpt_path}: it is corrupt or not a Lightning checkpoint "
                     f"({type(error).__name__}: {first_line})")


    def _run_subcommand(self, subcommand: str) -> None:
        self._check_checkpoint_fits(subcommand)
        super()._run_subcommand(subcommand)

    def _check_checkpoint_fits(self, subcommand: str) -> None:
        """A checkpoint of another task or net size, or with NaN weights, stops here with one line, before the
        Trainer creates a log folder that would stay empty."""
        ckpt_path = self.config[subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file() or not isinstance(self.model, GRAMModule):
            return
        import torch

        try:  # mmap: the tensors are read only where the check touches them (shapes, then a NaN scan)
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a file of torch's legacy (non-zip) format cannot be mapped
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        try:
            self.model.check_checkpoint(checkpoint, self.datamodule)
        except GramError as error:
            raise type(error)(f"checkpoint {ckpt_path}: {error}") from None


def user_error(error: BaseException) -> GramError | None:
    """The GramError behind `error`: raised directly, or wrapped by jsonargparse (a DataModule's or the
    module's constructor fails inside its "Does not validate against any of the Union subtypes")."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, GramError):
            return error
        seen.add(id(error))
        # The explicit cause only: an error raised while handling another (its __context__) is a bug of its own.
        error = error.__cause__
    return None


def main(args=None) -> None:
    """The `gram` command. Known errors (bad data files, a corrupt cache, a checkpoint that does not fit, a bad
    setting, a run that diverged) end it with one line `gram: <message>` and status 1; GRAM_DEBUG=1 shows their
    traceback too."""
    try:
        GramCLI(
            GRAMModule,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            args=args,
        )
    except Exception as error:
        known = user_error(error)
        if known is None or os.environ.get("GRAM_DEBUG", "") not in ("", "0"):
            raise
        sys.exit(f"gram: {known}")


if __name__ == "__main__":
    main()
