"""The `gram` command: Lightning's CLI with every run's defaults (defaults.yaml), the data's shapes linked into
the network, and a checkpoint given with --ckpt_path checked before the run starts."""

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
from gram_lightning.base_module import BaseModule


# The defaults of every run (trainer settings, logger, the callbacks all tasks share); a task config adds to them.
DEFAULTS = Path(__file__).with_name("defaults.yaml")

# The checkpoint names Lightning resolves itself rather than reading a file.
SPECIAL_CKPT_PATHS = ("last", "best", "hpc")


class GramCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        # Called for each parser that holds a run's arguments: one per subcommand, or the only one (run=False).
        # jsonargparse skips a default file it cannot find, and a run without it would save no checkpoints.
        if not DEFAULTS.is_file():
            raise FileNotFoundError(f"{DEFAULTS} is missing from the installation")
        parser.default_config_files = [str(DEFAULTS)]
        # Every model family (GRAM by default; the baselines' configs switch `model.class_path`) has a net that takes
        # these four.
        for name in ("vocab_size", "seq_len", "out_len", "num_puzzle_ids"):
            parser.link_arguments(f"data.{name}", f"model.init_args.net.init_args.{name}", apply_on="instantiate")
        # Always on: `gram test` leaves test_metrics.json and `gram predict` predictions.jsonl in the log dir.
        parser.add_lightning_class_args(TestMetricsWriter, "test_metrics_writer")
        parser.add_lightning_class_args(JsonlPredictionWriter, "prediction_writer")
        # Unconditional tasks: `gram predict` also writes samples.png / samples.txt / sample_metrics.json.
        parser.add_lightning_class_args(GeneratedSamplesWriter, "generated_samples_writer")
        # ARC: `gram test` also writes the voted answers (predictions.jsonl) and an ARC Prize submission.json.
        parser.add_lightning_class_args(ARCPredictionsWriter, "arc_predictions_writer")

    def parse_arguments(self, parser, args) -> None:
        # LightningCLI reads --ckpt_path's hyperparameters right after this; a missing or unreadable file stops
        # here with one line instead of a traceback from deep inside torch.
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        self._ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        self._checkpoint = None
        if self._ckpt_path and self._ckpt_path not in SPECIAL_CKPT_PATHS:
            self._checkpoint = read_checkpoint(self._ckpt_path)

    def instantiate_trainer(self, **kwargs):
        # Every run writes its checkpoints atomically (see checkpoint_io.py); a CheckpointIO plugin given with
        # --trainer.plugins is used as given instead.
        trainer = super().instantiate_trainer(**kwargs)
        install_atomic_checkpoint_io(trainer)
        return trainer

    def after_instantiate_classes(self) -> None:
        """A checkpoint of another task or net size, or with NaN weights, stops here with one line, before the
        subcommand runs and the Trainer creates a log folder that would stay empty."""
        checkpoint, self._checkpoint = self._checkpoint, None
        if checkpoint is None or not isinstance(self.model, BaseModule):
            return
        try:
            self.model.check_checkpoint(checkpoint, self.datamodule)
        except GramError as error:
            raise type(error)(f"checkpoint {self._ckpt_path}: {error}") from None
        self.model.checkpoint_checked = True


def read_checkpoint(ckpt_path: str) -> dict:
    """The checkpoint at `ckpt_path`, its tensors memory-mapped (read only where a check touches them); a missing,
    truncated or foreign file ends the program with one line."""
    import torch

    if not Path(ckpt_path).is_file():
        sys.exit(f"gram: checkpoint not found: {ckpt_path}")
    try:
        try:
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a file of torch's legacy (non-zip) format cannot be mapped
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file fails in many ways deep inside torch
        first_line = (str(error).splitlines() or [""])[0]
        sys.exit(f"gram: cannot read checkpoint {ckpt_path}: it is corrupt or not a Lightning checkpoint "
                 f"({type(error).__name__}: {first_line})")
    if not isinstance(checkpoint, dict):
        sys.exit(f"gram: cannot read checkpoint {ckpt_path}: it is not a Lightning checkpoint "
                 f"(it holds a {type(checkpoint).__name__}, not a dict)")
    return checkpoint


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


def build_cli(args=None, run: bool = True) -> GramCLI:
    """The `gram` CLI on `args` (default: the command line). The model is any `BaseModule` named by
    `model.class_path` (defaults.yaml: GRAMModule); run=False builds model, data and trainer without running."""
    return GramCLI(
        BaseModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


def main(args=None) -> None:
    """The `gram` command. Known errors (bad data files, a corrupt cache, a checkpoint that does not fit, a bad
    setting, a run that diverged) end it with one line `gram: <message>` and status 1; GRAM_DEBUG=1 shows their
    traceback too."""
    command = sys.argv[1:] if args is None else list(args)
    if command[:1] == ["sweep"]:  # `gram sweep`: hyperparameter sweeps on Optuna (gram_lightning/sweep.py)
        from gram_lightning import sweep

        return sweep.main(command[1:])
    try:
        build_cli(args)
    except Exception as error:
        known = user_error(error)
        if known is None or os.environ.get("GRAM_DEBUG", "") not in ("", "0"):
            raise
        sys.exit(f"gram: {known}")


if __name__ == "__main__":
    main()
