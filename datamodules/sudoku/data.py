"""The Sudoku DataModule: generated (and cached) or CSV splits, the unconditional mode, and the Task members."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from datamodules.cache import cached_dataset
from datamodules.generation import split_rng
from datamodules.puzzle_data import require
from datamodules.ragged import RaggedSolutions, SolutionsDataModule
from datamodules.sudoku.augment import augment_batch
from datamodules.sudoku.boards import BLANK_TOKEN, FIRST_DIGIT_TOKEN, SUPPORTED_SIZES, check_solution, row_keys
from datamodules.sudoku.csv import read_sudoku_csv
from datamodules.sudoku.equivalence import EquivalenceIndex
from datamodules.sudoku.generator import (
    DEFAULT_MIN_GUESSES,
    GENERATOR_VERSION,
    generate_split,
    inputs_fingerprint,
    key_matrix,
    split_keys,
)
from gram_lightning.errors import GramUserError
from gram_lightning.render import PALETTE, grid_image
from gram_lightning.sample_set_metrics import SampleSetMetrics
from gram_lightning.task import Task

log = logging.getLogger(__name__)


class SudokuDataModule(SolutionsDataModule, Task):
    """Sudoku puzzles: generated (and cached) on the fly, or read from Sudoku-Extreme CSV files.

    Batches are dicts of ``inputs`` (B, L) and ``labels`` (B, L) tokens, ``num_solutions`` (B,)
    and ``index`` (B,), the puzzle's index in its split (see `solutions`). Tokens: 0 = PAD,
    1 = blank, 2..n+1 = digits 1..n; L = n * n. Validation uses the first ``num_val_puzzles``
    puzzles of the test split. Train and test inputs are disjoint; generated training puzzles are
    moreover never equivalent to a test puzzle under the augmentation group (digit relabelling,
    transpose, band/row/stack/column permutations), since augmenting such a puzzle would show the
    test puzzle in training. That matters for small 4x4 spaces: with 3-6 givens, 2000 training and
    256 test puzzles (experiments/demo.yaml), half of the training puzzles drawn are equivalent to
    a test puzzle and are replaced, which leaves few 3-given puzzles in training. CSV files are
    only checked for identical inputs.

    Generating 1000 unique 9x9 puzzles takes 22, 44, 87, 209 and 368 CPU-seconds for
    min_guesses = 1, 3, 5, 8 and 10 (median guesses 2, 5, 7, 10, 13; about 24 givens), so about
    11, 22, 43, 105 and 185 s with num_proc=2 on 2 free cores: the filter rejects more grids as it
    rises. Puzzles with guesses >= 1 cannot be solved by naked and hidden singles alone. Splits are
    built once and cached.

    Args:
        board_size: Board side n: 4, 9 or 16 (boxes are sqrt(n) x sqrt(n)).
        num_train_puzzles: Number of training puzzles. With ``train_csv``: a seeded random subset
            of this many rows, -1 for all rows.
        num_test_puzzles: Number of test puzzles. With ``test_csv``: a seeded random subset of
            this many rows, -1 for all rows.
        num_val_puzzles: Validation puzzles, taken as the first ones of the test split.
        unique: Generate puzzles with a unique solution (minimal puzzles from random grids).
            False: multi-solution mode, where each puzzle keeps a random number of givens in
            [min_givens, max_givens] and all its solutions are stored.
        min_givens: Fewest givens per puzzle in multi-solution mode (required when unique=False).
        max_givens: Most givens per puzzle in multi-solution mode (required when unique=False).
        min_guesses: Hardness filter for unique puzzles: keep only puzzles whose solver search
            needs at least this many guesses. None: 8 for 9x9 and 0 otherwise.
        augment: Randomly relabel digits, transpose and permute bands/rows/stacks/columns of
            each training puzzle every time it is drawn.
        epoch_multiplier: One training epoch draws each puzzle this many times (each time freshly
            augmented), like the 1000x augmented copies of the paper's data.
        train_csv: Sudoku-Extreme style CSV replacing the generated training split.
        test_csv: Sudoku-Extreme style CSV replacing the generated test (and validation) split.
        cache_dir: Folder of the cached datasets (one subfolder per set of parameters).
        batch_size: Training batch size.
        eval_batch_size: Validation/test batch size; None: ``batch_size``.
        num_workers: DataLoader worker processes.
        num_proc: Processes that generate puzzles.
        seed: Seed of puzzle generation and of the random subsets of CSV files.
        unconditional: Unconditional generation p(x): every input is a blank board and the targets are
            ``num_train_puzzles`` distinct random solved grids (50,000 in sudoku_uncond.yaml; 9x9 grids
            take about 1.5 ms each to generate). Test inputs are ``num_test_puzzles`` blank boards; any
            valid board is a right answer, so val/exact_acc is the validity of the samples, and
            `generation_metrics` adds uniqueness and novelty (not a training grid, nor with
            ``augment`` equivalent to one). Ignores ``unique``,
            ``min_guesses`` and ``augment`` is still applied (a transformed grid is another valid grid).
    """

    def __init__(
        self,
        board_size: int = 9,
        num_train_puzzles: int = 1000,
        num_test_puzzles: int = 1000,
        num_val_puzzles: int = 200,
        unique: bool = True,
        min_givens: int | None = None,
        max_givens: int | None = None,
        min_guesses: int | None = None,
        augment: bool = True,
        epoch_multiplier: int = 1000,
        train_csv: str | None = None,
        test_csv: str | None = None,
        cache_dir: str = "data/cache",
        batch_size: int = 768,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_proc: int = 2,
        seed: int = 0,
        unconditional: bool = False,
    ) -> None:
        super().__init__(
            batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed,
            epoch_multiplier=epoch_multiplier, augment=augment, num_proc=num_proc, cache_dir=cache_dir,
        )
        self.save_hyperparameters()
        if min_guesses is None:
            min_guesses = DEFAULT_MIN_GUESSES.get(board_size, 0)
        _validate_args(
            board_size=board_size, num_train_puzzles=num_train_puzzles, num_test_puzzles=num_test_puzzles,
            num_val_puzzles=num_val_puzzles, unique=unique, min_givens=min_givens, max_givens=max_givens,
            min_guesses=min_guesses, train_csv=train_csv, test_csv=test_csv, unconditional=unconditional,
        )
        self.board_size = board_size
        self.unconditional = unconditional
        self.num_train_puzzles, self.num_test_puzzles = num_train_puzzles, num_test_puzzles
        self.num_val_puzzles = num_val_puzzles
        self.unique, self.min_givens, self.max_givens = unique, min_givens, max_givens
        self.min_guesses = min_guesses
        self.train_csv, self.test_csv = train_csv, test_csv

        # Known before setup: the CLI links these into the model when it instantiates it.
        self.vocab_size = board_size + 2  # PAD, blank, n digits
        self.seq_len = board_size * board_size
        self.out_len = self.seq_len

        self._train_grid_index: EquivalenceIndex | None = None

    # -- building ---------------------------------------------------------------------------

    def cached_splits(self) -> tuple[datasets.Dataset, datasets.Dataset]:
        """Generated or read from CSV; the test split first, which generated training leaves out."""
        test = self._test_source()
        return self._train_source(test), test

    def load_splits(self, train_source: datasets.Dataset, test_source: datasets.Dataset) -> dict[str, RaggedSolutions]:
        test = RaggedSolutions.from_dataset(self._take(test_source, self.num_test_puzzles, "test"))
        train = RaggedSolutions.from_dataset(self._take(train_source, self.num_train_puzzles, "train"))
        if not self.unconditional:  # blank inputs are all equal by design
            train = _without_overlap(train, test)
            if len(train) == 0:
                raise GramUserError(
                    f"every training puzzle is also a test puzzle (train: {self.train_csv or 'generated'}, test: "
                    f"{self.test_csv or 'generated'}), and training leaves test puzzles out: give a train_csv "
                    f"with other puzzles"
                )
        if self.num_val_puzzles > len(test):
            raise GramUserError(f"num_val_puzzles={self.num_val_puzzles} but the test split has only {len(test)} puzzles")
        return {"train": train, "val": test.head(self.num_val_puzzles), "test": test}

    def _test_source(self) -> datasets.Dataset:
        if self.test_csv:
            return self._csv_source(self.test_csv)
        return self._generated_split("test", self.num_test_puzzles, exclude=None)

    def _train_source(self, test_source: datasets.Dataset) -> datasets.Dataset:
        if self.train_csv:
            return self._csv_source(self.train_csv)
        return self._generated_split("train", self.num_train_puzzles, exclude=test_source)

    def _generated_split(self, split: str, count: int, exclude: datasets.Dataset | None) -> datasets.Dataset:
        n = self.board_size
        params: dict[str, Any] = {
            "kind": "generated", "version": GENERATOR_VERSION, "board_size": n, "split": split,
            "count": count, "unique": self.unique, "min_givens": self.min_givens,
            "max_givens": self.max_givens, "min_guesses": self.min_guesses if self.unique else None,
            "seed": self.seed,
            # Train leaves out every test input (test grid when unconditional), so its content depends on them.
            "exclude_inputs": inputs_fingerprint(exclude, self.unconditional) if exclude is not None else None,
        }
        if self.unconditional:
            params.update(kind="unconditional", unique=None, min_guesses=None)

        def build() -> datasets.Dataset:
            excluded = split_keys(exclude, self.unconditional) if exclude is not None else None
            # Test inputs are blank when unconditional: nothing to leak but the grids themselves.
            equivalent = None
            if exclude is not None and not self.unconditional:
                equivalent = EquivalenceIndex(key_matrix(exclude), n)
            return generate_split(
                split, count, n=n, unique=self.unique, min_givens=self.min_givens, max_givens=self.max_givens,
                min_guesses=self.min_guesses, seed=self.seed, num_proc=self.num_proc, exclude=excluded,
                unconditional=self.unconditional, exclude_equivalent=equivalent,
            )

        name = f"sudoku{n}-uncond-{split}" if self.unconditional else f"sudoku{n}-{split}"
        return cached_dataset(self.cache_dir, name, params, build)

    def _csv_source(self, csv_path: str) -> datasets.Dataset:
        path = Path(csv_path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"Sudoku CSV file not found: {path}")
        stat = path.stat()
        # Size and modification time stand in for the content: an edited file is read again.
        params = {
            "kind": "csv", "version": GENERATOR_VERSION, "board_size": self.board_size, "path": str(path),
            "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        }
        return cached_dataset(
            self.cache_dir, f"sudoku{self.board_size}-csv-{path.stem}", params,
            lambda: read_sudoku_csv(path, self.board_size),
        )

    def _take(self, source: datasets.Dataset, count: int, split: str) -> datasets.Dataset:
        """All of ``source``, or a seeded random subset of ``count`` rows (CSV files)."""
        if count < 0 or count >= len(source):
            if count > len(source):
                log.warning("%s: asked for %d puzzles but the source has only %d", split, count, len(source))
            return source
        rng = split_rng(self.seed, split)
        rows = np.sort(rng.choice(len(source), size=count, replace=False))
        return source.select(rows)

    # -- loading ----------------------------------------------------------------------------

    def augment_fn(self):
        return augment_batch

    # -- evaluation helpers -----------------------------------------------------------------

    def check(self, inputs: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        """(B, L) inputs and predicted tokens -> (B,) bool: a valid Sudoku keeping all givens."""
        return check_solution(inputs, preds, self.board_size)

    def generation_metrics(self) -> SampleSetMetrics | None:
        """Unconditional mode: validity, uniqueness and novelty of sampled boards (None otherwise).

        A valid sample is novel when no training grid equals it, or, with ``augment``, when no
        training grid is equivalent to it under the augmentation group (`EquivalenceIndex`).
        """
        if not self.unconditional:
            return None
        grids = self._split("train").solutions  # one grid per training board
        if self.augment:
            # Training shows every image of a grid under the augmentation group, so a sample
            # equivalent to a training grid is not new. Built once (50,000 9x9 grids: about 12 s).
            if self._train_grid_index is None:
                self._train_grid_index = EquivalenceIndex(grids, self.board_size)
            return SampleSetMetrics(self.check, known=self._train_grid_index.known)
        return SampleSetMetrics(self.check, reference=grids.long())

    def format(self, output: torch.Tensor) -> str:
        """One board as text: n lines of digits, '.' for a blank or a token that is not a digit."""
        n = self.board_size
        digits = output.long().view(n, n) - BLANK_TOKEN
        chars = "." + "123456789ABCDEFG"[:n]
        return "\n".join("".join(chars[d] if 0 <= d <= n else "." for d in row.tolist()) for row in digits)

    def render(self, inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """One board as a (3, H, W) image: a colour per digit, white blanks, givens framed."""
        n = self.board_size
        digits = (output.long() - BLANK_TOKEN).clamp(0, len(PALETTE) - 1)  # blank / PAD -> white
        return grid_image(PALETTE[digits].view(n, n, 3), frame=(inputs >= FIRST_DIGIT_TOKEN).view(n, n))


def _validate_args(
    *,
    board_size: int,
    num_train_puzzles: int,
    num_test_puzzles: int,
    num_val_puzzles: int,
    unique: bool,
    min_givens: int | None,
    max_givens: int | None,
    min_guesses: int,
    train_csv: str | None,
    test_csv: str | None,
    unconditional: bool,
) -> None:
    """Raise a ValueError naming the first bad `SudokuDataModule` argument."""

    cells = board_size * board_size
    require(board_size in SUPPORTED_SIZES, f"board_size must be one of {SUPPORTED_SIZES}, got {board_size}")
    for name, count, csv_path in (("num_train_puzzles", num_train_puzzles, train_csv),
                                  ("num_test_puzzles", num_test_puzzles, test_csv)):
        if csv_path:
            require(count == -1 or count >= 1, f"{name} must be >= 1, or -1 for all CSV rows; got {count}")
        else:
            require(count >= 1, f"{name} must be >= 1 for generated puzzles (-1 only with a CSV), got {count}")
    require(num_val_puzzles >= 0, f"num_val_puzzles must be >= 0, got {num_val_puzzles}")
    require(test_csv is not None or num_test_puzzles == -1 or num_val_puzzles <= num_test_puzzles,
            f"num_val_puzzles={num_val_puzzles} exceeds num_test_puzzles={num_test_puzzles}: "
            f"validation uses the first test puzzles")
    if unconditional:
        require(train_csv is None and test_csv is None, "unconditional=True generates solved grids; it does not read CSV files")
        require(min_givens is None and max_givens is None, "unconditional=True has blank inputs: drop min_givens/max_givens")
    elif unique:
        require(min_givens is None and max_givens is None,
                "min_givens/max_givens only apply to multi-solution puzzles (unique=False); unique puzzles "
                "are minimal, their number of givens is not chosen")
    else:
        require(min_givens is not None and max_givens is not None,
                "unique=False (multi-solution puzzles) needs min_givens and max_givens")
        require(0 <= min_givens <= max_givens <= cells,
                f"need 0 <= min_givens <= max_givens <= {cells}, got min_givens={min_givens}, max_givens={max_givens}")
    require(min_guesses >= 0, f"min_guesses must be >= 0, got {min_guesses}")
    require(not (train_csv and test_csv and Path(train_csv).resolve() == Path(test_csv).resolve()),
            f"train_csv and test_csv are the same file ({train_csv}): every training puzzle would be a test puzzle, "
            f"and training leaves test puzzles out")
    require((train_csv is None and test_csv is None) or board_size in (4, 9),
            f"CSV files hold 4x4 or 9x9 boards (one character per cell), not {board_size}x{board_size}")


def _without_overlap(train: RaggedSolutions, test: RaggedSolutions) -> RaggedSolutions:
    """Drop training puzzles whose input is also a test input (possible with CSV files only)."""
    test_keys = set(row_keys(test.inputs.numpy()))
    keep = torch.tensor([key not in test_keys for key in row_keys(train.inputs.numpy())], dtype=torch.bool)
    dropped = int((~keep).sum())
    if dropped:
        log.warning("dropped %d training puzzles whose input is also in the test split", dropped)
        return train.subset(keep)
    return train
