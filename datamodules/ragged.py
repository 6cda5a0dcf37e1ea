"""Puzzle splits in memory with every solution of every input, the batches drawn from them, and the DataModule
members that read them: what Sudoku, N-Queens and graph coloring share beyond the loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

import datasets
import numpy as np
import torch

from datamodules.puzzle_data import PuzzleBatches, PuzzleDataModule
from datamodules.tables import board_matrix, ragged_boards, split_table

PAD_TOKEN = 0  # every task's PAD: what a padded solution slot holds


@dataclass
class RaggedSolutions:
    """One split in memory: the inputs and all their solutions, stored flat, input by input.

    Flat rather than padded to the largest count: a padded (P, S_max, L) tensor of 10x10 N-Queens would take about
    400 MB (43k inputs, up to 93 completions).

    Attributes:
        inputs: (P, L_in) uint8 input tokens.
        solutions: (T, L_out) uint8 solution tokens of all inputs, input by input.
        offsets: (P + 1,) int64: the solutions of input p are rows ``offsets[p]:offsets[p + 1]``.
        num_solutions: (P,) int64 solutions per input.
        columns: The split's other per-input columns, (P,) int64 each (Sudoku's ``guesses``, N-Queens'
            ``num_removed``, graph coloring's ``num_edges``).
    """

    inputs: torch.Tensor
    solutions: torch.Tensor
    offsets: torch.Tensor
    num_solutions: torch.Tensor
    columns: dict[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def from_counts(
        cls, inputs: torch.Tensor, solutions: torch.Tensor, counts: torch.Tensor,
        columns: dict[str, torch.Tensor] | None = None,
    ) -> RaggedSolutions:
        offsets = torch.zeros(len(counts) + 1, dtype=torch.long)
        offsets[1:] = counts.cumsum(0)
        return cls(inputs, solutions, offsets, counts.long(), columns or {})

    @classmethod
    def from_dataset(cls, ds: datasets.Dataset) -> RaggedSolutions:
        """A cached split (`datamodules.tables.puzzle_features`) in memory."""
        table = split_table(ds)
        inputs = board_matrix(table.column("inputs"))  # (P, L_in)
        flat, counts = ragged_boards(table.column("solutions"))  # (T, L_out) input by input, (P,)
        columns = {
            name: torch.from_numpy(table.column(name).to_numpy().astype(np.int64))
            for name in table.column_names if name not in ("inputs", "solutions", "num_solutions")
        }
        return cls.from_counts(torch.from_numpy(inputs), torch.from_numpy(flat), torch.from_numpy(counts), columns)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def subset(self, rows: torch.Tensor) -> RaggedSolutions:
        """The inputs ``rows`` ((R,) indices, in that order, or a (P,) bool mask) with their solutions."""
        rows = torch.as_tensor(rows)
        if rows.dtype == torch.bool:
            rows = rows.nonzero().squeeze(1)
        counts = self.num_solutions[rows]
        # Flat rows of the chosen inputs' solutions, in row order: starts[i] .. starts[i] + counts[i] - 1.
        shift = self.offsets[rows] - counts.cumsum(0) + counts
        flat = torch.repeat_interleave(shift, counts) + torch.arange(int(counts.sum()))
        columns = {name: values[rows] for name, values in self.columns.items()}
        return RaggedSolutions.from_counts(self.inputs[rows], self.solutions[flat], counts, columns)

    def head(self, count: int | None) -> RaggedSolutions:
        """The first ``count`` inputs (all of them when None or more than there are)."""
        if count is None or count >= len(self):
            return self
        return self.subset(torch.arange(count))

    def labels(self, rows: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """(B,) rows and (B,) solution slots (< each row's count) -> (B, L_out) long tokens."""
        return self.solutions[self.offsets[rows] + choice].long()

    def padded(self, rows: torch.Tensor) -> torch.Tensor:
        """(B,) rows -> (B, S, L_out) long solution tokens, PAD beyond each row's count; S is the largest count
        among ``rows`` (at least 1), not of the whole split, to keep it small."""
        counts = self.num_solutions[rows]
        width = max(int(counts.max()) if len(rows) else 1, 1)
        slot = torch.arange(width)
        valid = slot < counts[:, None]  # (B, S)
        source = (self.offsets[rows][:, None] + slot).clamp_max(max(len(self.solutions) - 1, 0))  # masked below
        return self.solutions[source].long().masked_fill(~valid[:, :, None], PAD_TOKEN)


class SolutionBatches(PuzzleBatches):
    """Batches of a `RaggedSolutions` split; with ``random_label`` a uniformly random solution of each input as its
    label, otherwise its first."""

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        counts = self.data.num_solutions[index]  # (B,)
        return {
            "inputs": self.data.inputs[index].long(),  # (B, L_in)
            "labels": self.data.labels(index, self.solution_choice(counts)),  # (B, L_out)
            "num_solutions": counts,  # (B,)
            "index": index,  # (B,)
        }


class SolutionsDataModule(PuzzleDataModule):
    """A puzzle DataModule whose splits are `RaggedSolutions`, loaded from a cached train and test dataset each:
    subclasses implement `cached_splits` and `load_splits`; batches and `Task.solutions` come from here."""

    splits: dict[str, RaggedSolutions]

    def cached_splits(self) -> tuple[datasets.Dataset, datasets.Dataset]:
        """The (train, test) datasets, built (or read) and cached first where they are not."""
        raise NotImplementedError

    def load_splits(self, train: datasets.Dataset, test: datasets.Dataset) -> dict[str, RaggedSolutions]:
        """The "train", "val" and "test" splits in memory, from the cached datasets."""
        raise NotImplementedError

    def prepare_data(self) -> None:
        """Build and cache both splits; runs once per node before `setup`."""
        self.cached_splits()

    def setup(self, stage: str | None = None) -> None:
        """Load the cached splits into memory (all stages share them)."""
        if not self.splits:
            self.splits = self.load_splits(*self.cached_splits())

    def batches(self, data: RaggedSolutions, *, repeat: int = 1, random_label: bool = False) -> PuzzleBatches:
        return SolutionBatches(data, repeat=repeat, random_label=random_label)

    def solutions(self, index: torch.Tensor, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All stored solutions of the inputs ``index`` (B,) of ``split``: (B, S, L_out) long tokens, PAD beyond
        each count (`RaggedSolutions.padded`), and (B,) counts, on ``index``'s device. Only meaningful for
        unaugmented batches (val / test)."""
        data = self._split(split)
        rows = index.detach().cpu().long()
        return data.padded(rows).to(index.device), data.num_solutions[rows].to(index.device)
