"""Binarized MNIST: tokens and binarization (images.py), reading the files (io.py), the FID / IS classifier and
metrics, the command line (cli.py, ``python -m datamodules.mnist``) and the DataModule (data.py), re-exported here
for the configs' class path."""

from datamodules.mnist.data import BinarizedMNISTDataModule

__all__ = ["BinarizedMNISTDataModule"]
