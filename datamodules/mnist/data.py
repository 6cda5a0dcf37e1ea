"""The binarized MNIST DataModule: unconditional generation of digits, judged by FID and the Inception Score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datamodules.mnist.classifier import MNISTClassifier, load_or_train_classifier
from datamodules.mnist.images import (
    BLACK_TOKEN,
    IMAGE_SIZE,
    NUM_PIXELS,
    PAD_TOKEN,
    VOCAB_SIZE,
    WHITE_TOKEN,
    binarize,
    tokens_to_images,
)
from datamodules.mnist.io import load_mnist
from datamodules.mnist.metrics import ImageGenerationMetrics
from datamodules.puzzle_data import PuzzleBatches, PuzzleDataModule, require
from gram_lightning.render import PURPLE
from gram_lightning.task import Task


class MNISTTensors:
    """One split in memory: (N, 784) uint8 tokens and (N,) int64 digit labels."""

    def __init__(self, tokens: torch.Tensor, digits: torch.Tensor) -> None:
        self.tokens, self.digits = tokens, digits

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, rows: torch.Tensor | slice) -> "MNISTTensors":
        return MNISTTensors(self.tokens[rows], self.digits[rows])


class _MNISTBatches(PuzzleBatches):
    """Unconditional batches: a blank input and a real binarized digit as the label."""

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        labels = self.data.tokens[index].long()  # (B, 784)
        return {
            "inputs": torch.full_like(labels, PAD_TOKEN),  # (B, 784): nothing is known
            "labels": labels,
            "index": index,  # (B,)
            "digit": self.data.digits[index],  # (B,)
        }


class BinarizedMNISTDataModule(PuzzleDataModule, Task):
    """Unconditional generation of binarized MNIST digits.

    Every input is blank (all PAD); the label is a real digit binarized at ``threshold`` (tokens 1 =
    black, 2 = white). Training draws the 60,000 training digits; validation and test use
    ``num_val_images`` / ``num_test_images`` of the 10,000 test digits, in a seeded random order, as the
    real reference of FID and the Inception Score (`generation_metrics`). There is no `check`: an image has no validity,
    so accuracy and its kin are not reported (`reports_solve_metrics`).

    Batches are dicts of ``inputs`` (B, 784) all 0, ``labels`` (B, 784) in {1, 2}, ``index`` (B,) (the
    row in its split) and ``digit`` (B,) (the class, 0..9). `setup` takes about 1 s.

    Mind the reference: MNIST's test set is ordered, its first 5,000 digits are cleaner than the last
    5,000 (other writers), hence the random order. With the cached classifier, a perfect generator (1,000
    real training digits) scores FID 12-14 against the first 1,000 test digits, 8-9 against 1,000 random
    ones and 6.7 against 1,000 other training digits (1,000 images per side add a bias of their own); the
    first 5,000 against the last 5,000 test digits score 21. Compare val FIDs with val FIDs, and test FIDs
    over all 10,000 digits with test FIDs.

    Args:
        data_dir: Folder with ``mnist.pkl.gz`` or the four IDX files (``make data`` fills data/mnist).
        threshold: Pixel brightness in [0, 1) above which a pixel is white.
        num_val_images: Validation images: test digits in a seeded random order (the real reference of
            validation FID).
        num_test_images: Test images: test digits in the same order. None: all 10,000.
        max_train_images: Train on a seeded random subset of this many digits (smoke runs). None: all.
        classifier_path: File caching the FID / IS classifier (trained on first use on all 60,000 training
            digits). None: ``<data_dir>/classifier.pt``.
        batch_size: Training batch size.
        eval_batch_size: Validation/test batch size; None: ``batch_size``.
        num_workers: DataLoader worker processes.
        seed: Seed of the ``max_train_images`` subset and of the order of the test digits.
    """

    reports_solve_metrics = False  # FID and the Inception Score say how good the samples are

    def __init__(
        self,
        data_dir: str = "data/mnist",
        threshold: float = 0.5,
        num_val_images: int = 1000,
        num_test_images: int | None = None,
        max_train_images: int | None = None,
        classifier_path: str | None = None,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers, seed=seed)
        self.save_hyperparameters()
        _validate_args(
            threshold=threshold, num_val_images=num_val_images, num_test_images=num_test_images,
            max_train_images=max_train_images,
        )
        self.data_dir, self.threshold = data_dir, float(threshold)
        self.num_val_images, self.num_test_images = num_val_images, num_test_images
        self.max_train_images = max_train_images
        self.classifier_path = classifier_path if classifier_path is not None else str(Path(data_dir) / "classifier.pt")

        # Known before setup: the CLI links these into the model when it instantiates it.
        self.vocab_size = VOCAB_SIZE  # PAD, black, white
        self.seq_len = NUM_PIXELS
        self.out_len = NUM_PIXELS
        self.image_size = IMAGE_SIZE

        self._full: dict[str, MNISTTensors] = {}  # all training and test digits (the classifier's data)
        self._classifier: MNISTClassifier | None = None

    # -- building ---------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Load and binarize the digits into memory (all stages share them)."""
        if self.splits:
            return
        train_x, train_y, test_x, test_y = load_mnist(self.data_dir)
        train = MNISTTensors(binarize(train_x, self.threshold), torch.from_numpy(train_y))
        test = MNISTTensors(binarize(test_x, self.threshold), torch.from_numpy(test_y))
        num_test = len(test) if self.num_test_images is None else self.num_test_images
        for name, count in (("num_val_images", self.num_val_images), ("num_test_images", num_test)):
            if count > len(test):
                raise ValueError(f"{name}={count} but {self.data_dir} has only {len(test)} test digits")
        if self.max_train_images is not None and self.max_train_images < len(train):
            rows = torch.from_numpy(np.random.default_rng(self.seed).permutation(len(train))[: self.max_train_images])
            train_split = train.subset(rows.sort().values)
        else:
            train_split = train
        self._full = {"train": train, "test": test}
        # MNIST's test set is ordered by writer group: a seeded random order makes any prefix a fair reference.
        order = torch.from_numpy(np.random.default_rng([self.seed, 1]).permutation(len(test)))
        self.splits = {
            "train": train_split,
            "val": test.subset(order[: self.num_val_images]),
            "test": test if num_test == len(test) else test.subset(order[:num_test]),
        }

    # -- loading ----------------------------------------------------------------------------

    def batches(self, data: MNISTTensors, *, repeat: int = 1, random_label: bool = False) -> _MNISTBatches:
        return _MNISTBatches(data, repeat=repeat, random_label=random_label)

    # -- evaluation helpers -----------------------------------------------------------------

    def images(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 784) tokens -> (B, 1, 28, 28) float32 in {0, 1} (white = 1)."""
        return tokens_to_images(tokens)

    def render(self, inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """One output as a (3, 28, 28) image: white digit on black; tokens other than black and white
        (PAD, or anything out of vocabulary) in purple, so an unfinished sample shows."""
        output = output.reshape(IMAGE_SIZE, IMAGE_SIZE).cpu()
        image = (output == WHITE_TOKEN).float().expand(3, -1, -1).clone()  # (3, 28, 28)
        odd = (output != WHITE_TOKEN) & (output != BLACK_TOKEN)
        image[:, odd] = PURPLE[:, None]
        return image

    def prepare_data(self) -> None:
        """Train and cache the FID / IS classifier once, on one process, before any rank needs it."""
        self.classifier()

    def classifier(self, device: str | torch.device = "cpu") -> MNISTClassifier:
        """The frozen FID / IS classifier, loaded from ``classifier_path`` or trained there on first use
        (1-2 minutes on a 2-core CPU) on all training digits binarized at ``threshold``, whatever
        ``max_train_images`` says. DDP ranks finding no cache take turns on a lock: one trains, the
        others load its file; ``python -m datamodules.mnist train-classifier`` does it ahead of time."""
        if self._classifier is None:
            self.setup()
            train, test = self._full["train"], self._full["test"]
            self._classifier, _ = load_or_train_classifier(
                self.classifier_path,
                # bool images (cast to float batch by batch): 47 MB rather than 188 MB of floats
                (train.tokens == WHITE_TOKEN).view(-1, 1, IMAGE_SIZE, IMAGE_SIZE), train.digits,
                (test.tokens == WHITE_TOKEN).view(-1, 1, IMAGE_SIZE, IMAGE_SIZE), test.digits,
                meta={"threshold": self.threshold},
                device=device,
            )
        return self._classifier

    def generation_metrics(self, device: str | torch.device | None = None) -> ImageGenerationMetrics:
        """A fresh FID / Inception Score accumulator on the cached classifier (see `classifier`).

        Args:
            device: Where to put the metrics (and to train the classifier if it is not cached yet).
                None: the CPU.
        """
        metrics = ImageGenerationMetrics(self.classifier(device if device is not None else "cpu"))
        return metrics.to(device) if device is not None else metrics


def _validate_args(
    *,
    threshold: float,
    num_val_images: int,
    num_test_images: int | None,
    max_train_images: int | None,
) -> None:
    """Raise a ValueError naming the first bad `BinarizedMNISTDataModule` argument."""

    require(isinstance(threshold, (int, float)) and 0 <= threshold < 1,
            f"threshold must be in [0, 1) (pixel brightness above which a pixel is white), got {threshold!r}")
    # FID needs two images on each side, and the val set is its real reference.
    require(num_val_images >= 2, f"num_val_images must be >= 2 (FID needs two images), got {num_val_images}")
    require(num_test_images is None or num_test_images >= 2,
            f"num_test_images must be >= 2 (FID needs two images) or None (all), got {num_test_images}")
    require(max_train_images is None or max_train_images >= 1,
            f"max_train_images must be >= 1 or None (all), got {max_train_images}")
