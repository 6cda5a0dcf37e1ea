"""Graph coloring: graphs and tokens (graphs.py), judging colorings (colorings.py), the generator and the
DataModule (data.py), re-exported here for the configs' class path."""

from datamodules.graph_coloring.data import GraphColoringDataModule

__all__ = ["GraphColoringDataModule"]
