"""ARC-AGI: grids and variants (grids.py), tasks and their variant table (tasks.py), examples and batches,
voted pass@k (voting.py) and the DataModule (data.py), re-exported here for the configs' class path."""

from datamodules.arc.data import ARCDataModule

__all__ = ["ARCDataModule"]
