"""The `gram` command: Lightning's CLI with the data's shapes linked into the network."""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from callbacks.arc_predictions import ARCPredictionsWriter
from callbacks.generated_samples import GeneratedSamplesWriter
from callbacks.prediction_writer import JsonlPredictionWriter
from callbacks.test_metrics import TestMetricsWriter
from gram_lightning.module import CheckpointMismatchError, GRAMModule


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
        try:
            super()._run_subcommand(subcommand)
        except CheckpointMismatchError as error:  # a user error with a clear message: no traceback
            sys.exit(f"gram: {error}")


def main(args=None) -> None:
    GramCLI(
        GRAMModule,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        args=args,
    )


if __name__ == "__main__":
    main()
