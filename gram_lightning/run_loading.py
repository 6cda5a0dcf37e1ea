"""Rebuild a trained run (its config and checkpoint) outside `gram`, for the evaluation scripts in benchmarks/."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml

from gram_lightning.cli import GramCLI, build_cli


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """A script's own arguments, and those after `--` that go to the `gram` CLI."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def load_run(config: str, ckpt_path: str, overrides: list[str], tool: str) -> GramCLI:
    """The run's model (with the checkpoint's weights: the EMA weights, which EMAWeightAveraging saves as the
    state_dict) and DataModule, built from its config plus `gram` CLI `overrides`. Bad paths and unreadable
    checkpoints end the program with a message that starts with `tool`."""
    if not Path(config).is_file():
        sys.exit(f"{tool}: config not found: {config}")
    settings = yaml.safe_load(Path(config).read_text()) or {}
    for key in ("ckpt_path", "weights_only"):  # a run's saved config holds its fit subcommand's arguments
        settings.pop(key, None)
    cli = build_cli(["--config", yaml.safe_dump(settings), "--trainer.logger", "false", *overrides], run=False)
    path = Path(ckpt_path)
    if not path.is_file():
        sys.exit(f"{tool}: checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except Exception as error:  # a truncated or foreign file fails in many ways deep inside torch
        sys.exit(f"{tool}: cannot read checkpoint {path}: it is corrupt or not a Lightning checkpoint ({type(error).__name__})")
    cli.model.load_state_dict(state)
    return cli


def use_tf32_on_gpu() -> None:
    """TF32 matmuls on a GPU: sampling a run needs no more precision than the bf16 it trained in."""
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")


def load_for_evaluation(config: str, ckpt_path: str, overrides: list[str], tool: str):
    """`load_run`, then ready to sample: the module in eval mode on the GPU if there is one, the DataModule set
    up for test and attached as the module's task. Returns (module, datamodule)."""
    cli = load_run(config, ckpt_path, overrides, tool)
    module, datamodule = cli.model, cli.datamodule
    use_tf32_on_gpu()
    module.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    datamodule.prepare_data()
    datamodule.setup("test")
    module.attach_task(datamodule)
    return module, datamodule


def print_table(title: str, rows: list[dict], columns: list[str], float_format: str = ".3f") -> None:
    """Rows of dicts as a rich table on the console; 160 characters wide when written to a file or pipe (a
    benchmark's log), where rich's 80-column default folds every number of a wide table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(*(format(r[c], float_format) if isinstance(r[c], float) else str(r[c]) for c in columns))
    Console(width=None if sys.stdout.isatty() else 160).print(table)
