"""Sudoku: boards and tokens (boards.py), solver, generator, CSV reader (csv.py), augmentation, equivalence under
the augmentations, and the DataModule (data.py), re-exported here for the configs' class path."""

from datamodules.sudoku.data import SudokuDataModule

__all__ = ["SudokuDataModule"]
