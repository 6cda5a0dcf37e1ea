"""The N-Queens DataModule: partial boards of all solutions, split by orbit and cached, and the Task members."""

from __future__ import annotations

from typing import Any, Literal

import datasets
import torch

from datamodules.cache import cached_dataset
from datamodules.nqueens.boards import (
    EMPTY_TOKEN,
    QUEEN_TOKEN,
    VOCAB_SIZE,
    augment_batch,
    check_nqueens,
    queen_conflicts,
)
from datamodules.nqueens.solutions import (
    check_board_size,
    check_num_removed,
    dataset_from_partial_boards,
    default_num_removed,
    partial_boards,
)
from datamodules.nqueens.split import SPLIT_METHODS, TEST_FRACTION, split_rows
from datamodules.puzzle_data import require
from datamodules.ragged import RaggedSolutions, SolutionsDataModule
from gram_lightning.render import PURPLE, grid_image
from gram_lightning.task import Task

# Bump when the construction of the splits changes, so that old cache folders are not reused.
NQUEENS_VERSION = 2


class NQueensDataModule(SolutionsDataModule, Task):
    """N-Queens completion: partial boards of all n x n solutions, with every valid completion.

    Every solution of the board is enumerated, k of its queens are removed for every k in
    ``num_removed`` and every choice of the k queens, and the resulting inputs are de-duplicated;
    each input keeps all its valid completions. The distinct inputs are split about 85:15 into
    train and test by symmetry orbit: the 8 symmetries of the square map inputs to inputs, and
    training applies a random one to every input, so an input whose symmetric image is in training
    is effectively a training input. Whole orbits are assigned to one side with a seeded shuffle,
    so no symmetry (and no augmentation) maps a test input onto a training input. Validation uses
    the first ``num_val_puzzles`` inputs of the test split.

    Batches are dicts of ``inputs`` (B, L) and ``labels`` (B, L) tokens, ``num_solutions`` (B,)
    and ``index`` (B,), the input's row in its split (see `solutions`). Tokens: 0 = PAD,
    1 = empty, 2 = queen; L = n * n. Training labels are a uniformly random completion each time
    an input is drawn; evaluation labels are the first completion (the accuracy metric uses
    `check`, which accepts any valid completion).

    Sizes with the default num_removed and seed, orbit split (train / test inputs, test share,
    mean completions per test input, time to build and cache both splits on one core): 8x8 (92
    solutions, 648 orbits): 4,372 / 776, 15.1%, 1.7, 0.1 s; 10x10 (724 solutions, 5,435 orbits):
    36,908 / 6,512, 15.0%, 2.8, 1.7 s. The paper split gives 4,376 / 772 and 36,907 / 6,513, and
    there every test input has a symmetric image in training. Loading a cached build takes 0.1 s.
    Splits are built once and cached.

    Args:
        board_size: Board side n, 4 to 11 (the paper uses 8 and 10).
        num_removed: Numbers of queens removed from a solution to make an input, each in 1..n.
            None: the paper's {5, 6, 7} for 8x8 and {7, 8, 9} for 10x10; for other sizes
            [n-3, n-2, n-1] clipped to >= 1 (inputs keep 1 to 3 queens).
        num_val_puzzles: Validation inputs, taken as the first ones of the (shuffled) test
            split. None: the whole test split.
        max_train_puzzles: Keep only this many training inputs (the first of the shuffled
            split, i.e. a seeded random subset). None: all.
        max_test_puzzles: Keep only this many test inputs, likewise. None: all.
        augment: Apply a random one of the 8 symmetries of the square (rotations, reflections)
            to each training input and its label every time it is drawn.
        epoch_multiplier: One training epoch draws each input this many times (each time with a
            fresh completion and symmetry). 1 keeps epochs comparable with the paper's.
        cache_dir: Folder of the cached datasets (one subfolder per set of parameters).
        batch_size: Training batch size.
        eval_batch_size: Validation/test batch size; None: ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: Seed of the train/test split shuffle.
        split: How the inputs are split into train and test. "orbit": by symmetry orbit, about
            85:15 of the inputs (`orbit_split_rows`). "paper": the paper's literal 85:15 split by
            unique input (`paper_split_rows`); it LEAKS: every test input's symmetric image is a
            training input, and the augmentation maps it onto the test input. Kept only to
            reproduce the paper's numbers.
    """

    violations_name = "queen_conflicts"  # what `violations` counts

    def __init__(
        self,
        board_size: int = 8,
        num_removed: list[int] | None = None,
        num_val_puzzles: int | None = None,
        max_train_puzzles: int | None = None,
        max_test_puzzles: int | None = None,
        augment: bool = True,
        epoch_multiplier: int = 1,
        cache_dir: str = "data/cache",
        batch_size: int = 768,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        split: Literal["orbit", "paper"] = "orbit",
    ) -> None:
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed,
            epoch_multiplier=epoch_multiplier, augment=augment, cache_dir=cache_dir,
        )
        self.save_hyperparameters()
        check_board_size(board_size)
        num_removed = check_num_removed(
            board_size, default_num_removed(board_size) if num_removed is None else num_removed
        )
        _validate_args(
            num_val_puzzles=num_val_puzzles, max_train_puzzles=max_train_puzzles,
            max_test_puzzles=max_test_puzzles, split=split,
        )
        self.board_size = board_size
        self.num_removed = num_removed
        self.num_val_puzzles = num_val_puzzles
        self.max_train_puzzles, self.max_test_puzzles = max_train_puzzles, max_test_puzzles
        self.split = split

        # Known before setup: the CLI links these into the model when it instantiates it.
        self.vocab_size = VOCAB_SIZE  # PAD, empty, queen
        self.seq_len = board_size * board_size
        self.out_len = self.seq_len

    # -- building ---------------------------------------------------------------------------

    def cached_splits(self) -> tuple[datasets.Dataset, datasets.Dataset]:
        return self._cached_split("train"), self._cached_split("test")

    def load_splits(self, train: datasets.Dataset, test: datasets.Dataset) -> dict[str, RaggedSolutions]:
        # The first rows of a split are a seeded random subset of it: splits are stored shuffled.
        train_split = RaggedSolutions.from_dataset(train).head(self.max_train_puzzles)
        test_split = RaggedSolutions.from_dataset(test).head(self.max_test_puzzles)
        num_val = len(test_split) if self.num_val_puzzles is None else self.num_val_puzzles
        if num_val > len(test_split):
            raise ValueError(f"num_val_puzzles={num_val} but the test split has only {len(test_split)} inputs")
        return {"train": train_split, "val": test_split.head(num_val), "test": test_split}

    def _cached_split(self, split: str) -> datasets.Dataset:
        n = self.board_size
        params: dict[str, Any] = {
            "version": NQUEENS_VERSION, "board_size": n, "num_removed": self.num_removed,
            "seed": self.seed, "test_fraction": TEST_FRACTION, "split": split, "split_method": self.split,
        }

        def build() -> datasets.Dataset:
            puzzles = partial_boards(n, self.num_removed)
            rows = split_rows(puzzles, self.seed, self.split)
            if not all(len(r) for r in rows.values()):  # an empty dataset cannot be saved and loaded
                raise ValueError(
                    f"the {n}x{n} board with num_removed={self.num_removed} gives {len(puzzles)} distinct "
                    f"inputs, too few to split into train and test; remove more queens"
                )
            return dataset_from_partial_boards(puzzles, rows[split])

        return cached_dataset(self.cache_dir, f"nqueens{n}-{split}", params, build)

    # -- loading ----------------------------------------------------------------------------

    def augment_fn(self):
        return augment_batch

    # -- evaluation helpers -----------------------------------------------------------------

    def check(self, inputs: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        """(B, L) inputs and predicted tokens -> (B,) bool: a valid N-Queens board keeping every
        queen of the input."""
        return check_nqueens(inputs, preds, self.board_size)

    def violations(self, inputs: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        """(B, L) inputs and predicted tokens -> (B,) long: attacking queen pairs, missing and dropped queens and
        non-board tokens (`queen_conflicts`); 0 exactly for a valid completion."""
        return queen_conflicts(inputs, preds, self.board_size)

    def render(self, inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """One board as a (3, H, W) image: a chessboard, queens in black, the input's queens framed."""
        n = self.board_size
        light = (torch.arange(n)[:, None] + torch.arange(n)[None, :]) % 2 == 0
        colors = torch.where(light[..., None], torch.tensor([0.93, 0.89, 0.80]), torch.tensor([0.76, 0.64, 0.50]))
        colors[(output == QUEEN_TOKEN).view(n, n)] = 0.05
        colors[~torch.isin(output, torch.tensor([EMPTY_TOKEN, QUEEN_TOKEN])).view(n, n)] = PURPLE
        return grid_image(colors, cell=10, frame=(inputs == QUEEN_TOKEN).view(n, n))


def _validate_args(
    *,
    num_val_puzzles: int | None,
    max_train_puzzles: int | None,
    max_test_puzzles: int | None,
    split: str,
) -> None:
    """Raise a ValueError naming the first bad `NQueensDataModule` argument."""

    require(num_val_puzzles is None or num_val_puzzles >= 0,
            f"num_val_puzzles must be >= 0, or None for the whole test split; got {num_val_puzzles}")
    for name, value in (("max_train_puzzles", max_train_puzzles), ("max_test_puzzles", max_test_puzzles)):
        require(value is None or value >= 1, f"{name} must be >= 1 or None (all), got {value}")
    require(max_test_puzzles is None or num_val_puzzles is None or num_val_puzzles <= max_test_puzzles,
            f"num_val_puzzles={num_val_puzzles} exceeds max_test_puzzles={max_test_puzzles}: "
            f"validation uses the first test inputs")
    require(split in SPLIT_METHODS, f"split must be one of {SPLIT_METHODS}, got {split!r}")
