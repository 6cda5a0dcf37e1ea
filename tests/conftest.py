import importlib.util
from pathlib import Path
from types import ModuleType

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from gram_lightning.model import GRAM
from gram_lightning.task import Task


@pytest.fixture(autouse=True)
def _few_threads():
    # CI has 2 cores; more threads only contend.
    torch.set_num_threads(2)


def tiny_net(**overrides) -> GRAM:
    """A GRAM small enough to run dozens of times per second on a CPU."""
    kwargs = dict(vocab_size=6, seq_len=16, hidden_size=32, num_heads=2, expansion=2.0, num_layers=1,
                  puzzle_prefix_len=2, T=2, K=2, N_sup=3, noise="learned")
    kwargs.update(overrides)
    return GRAM(**kwargs)


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/<name>.py imported as a module (the folder is scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_cli(args: list[str]):
    """The `gram` command's CLI parsed from `args` without running a subcommand (fit / test by hand)."""
    from gram_lightning.cli import build_cli

    return build_cli(args, run=False)


TINY_TRAINER = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)


class RandomBoards(L.LightningDataModule, Task):
    """Random 16-token boards. No `Task.check`: outputs are judged by equality with the label."""

    vocab_size, seq_len, out_len, num_puzzle_ids = 6, 16, 16, 0

    def _loader(self):
        g = torch.Generator().manual_seed(0)
        labels = torch.randint(2, 6, (32, 16), generator=g)
        inputs = torch.where(torch.rand(32, 16, generator=g) < 0.5, labels, torch.ones_like(labels))
        return DataLoader([{"inputs": x, "labels": y} for x, y in zip(inputs, labels)], batch_size=8, drop_last=True)

    train_dataloader = val_dataloader = test_dataloader = _loader
