"""N-Queens completion: boards and tokens (boards.py), solutions and partial boards (solutions.py), the orbit split
(split.py) and the DataModule (data.py), re-exported here for the configs' class path."""

from datamodules.nqueens.data import NQueensDataModule

__all__ = ["NQueensDataModule"]
