"""FID and Inception Score of generated binarized images, measured with a project-trained classifier.

`ImageGenerationMetrics` wraps torchmetrics' `FrechetInceptionDistance` and `InceptionScore` with the
MNIST classifier of `datamodules.mnist.classifier` in place of Inception-v3: FID compares the
classifier's 128 penultimate features of generated and real digits, the Inception Score its class
predictions of the generated ones (10 for confident predictions spread evenly over the 10 digits, 1 for a
single digit or unrecognisable images). Both are comparable only between runs using the same classifier
checkpoint.

The states are torchmetrics states, so under DDP `compute` sees every rank's images (FID sums its
statistics, the Inception Score gathers the logits).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.utilities import dim_zero_cat

from datamodules.mnist.classifier import ClassifierFeatures, ClassifierLogits
from datamodules.mnist.images import tokens_to_images

# The Inception Score is computed on splits of at least this many images (see `SplitInceptionScore`).
MIN_SPLIT_SIZE = 1000


class SafeFrechetInceptionDistance(FrechetInceptionDistance):
    """torchmetrics' FID, but NaN rather than an exception when either side has fewer than 2 images
    (a tiny validation run should not stop training)."""

    def compute(self) -> Tensor:
        if self.real_features_num_samples < 2 or self.fake_features_num_samples < 2:
            return torch.tensor(math.nan, device=self.real_features_sum.device)
        return super().compute()


class SplitInceptionScore(InceptionScore):
    """torchmetrics' Inception Score with a split count that suits small sets, and a fixed shuffle.

    The score of a split is biased low when the split is small (its class marginal is estimated from
    few images: about exp(-9 / 2n) of the true score for 10 balanced classes), so the images are cut
    into ``clamp(n // min_split_size, 1, splits)`` splits: 1,000 validation images give one split,
    10,000 test images ten splits of 1,000, and the two scores are comparable. With one split the
    standard deviation is 0. The shuffle before splitting is seeded, so every DDP rank (which all see
    the gathered logits) reports the same value, and the global random state is left alone.

    Args:
        feature: Module mapping images to (B, C) logits.
        splits: Most splits.
        min_split_size: Fewest images per split (except when there are fewer images in all).
    """

    def __init__(self, feature: nn.Module, splits: int = 10, min_split_size: int = MIN_SPLIT_SIZE) -> None:
        if splits < 1 or min_split_size < 1:
            raise ValueError(f"splits and min_split_size must be >= 1, got {splits} and {min_split_size}")
        with warnings.catch_warnings():
            # "will save all extracted features in buffer": 10 logits per image, nothing to worry about.
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            super().__init__(feature=feature, splits=splits)
        self.min_split_size = min_split_size

    def compute(self) -> tuple[Tensor, Tensor]:
        empty = isinstance(self.features, list) and not self.features  # a list locally, maybe a tensor once synced
        logits = torch.zeros(0, 1) if empty else dim_zero_cat(self.features)  # (n, C)
        n = len(logits)
        if n == 0:
            nan = torch.tensor(math.nan, device=logits.device)
            return nan, nan
        splits = max(1, min(self.splits, n // self.min_split_size))
        order = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(logits.device)
        log_prob = logits[order].double().log_softmax(dim=1)  # (n, C)
        scores = []
        for chunk in log_prob.chunk(splits, dim=0):
            log_marginal = chunk.exp().mean(0).log()  # (C,)
            kl = (chunk.exp() * (chunk - log_marginal)).sum(1).mean()
            scores.append(kl.exp())
        scores = torch.stack(scores)
        std = scores.std() if splits > 1 else torch.zeros((), dtype=scores.dtype, device=scores.device)
        return scores.mean().float(), std.float()


class ImageGenerationMetrics(nn.Module):
    """FID (generated vs real) and Inception Score (generated) of binarized 28 x 28 images.

    Protocol: `update` with each batch and its generated samples, `compute` at the end, `reset` before
    the next round. An `nn.Module` so that ``.to(device)`` moves states and classifier; keep it out of
    the model's submodules (e.g. in a plain dict), so that the frozen classifier enters neither the
    optimizer nor the checkpoint.

    Args:
        classifier: An `MNISTClassifier` (``features`` -> (B, 128) and ``forward`` -> (B, 10) logits).
            It is put in eval mode; freeze it (``requires_grad_(False)``) if it is shared.
        splits: Most Inception Score splits (see `SplitInceptionScore`).
        min_split_size: Fewest images per Inception Score split.
    """

    headline = "fid"  # the value the progress bar shows during validation

    def __init__(self, classifier: nn.Module, splits: int = 10, min_split_size: int = MIN_SPLIT_SIZE) -> None:
        super().__init__()
        self.fid = SafeFrechetInceptionDistance(
            feature=ClassifierFeatures(classifier), reset_real_features=True, normalize=False
        )
        self.inception_score = SplitInceptionScore(ClassifierLogits(classifier), splits, min_split_size)

    def update(self, batch: dict[str, Tensor], samples: Tensor) -> None:
        """Add a batch: ``batch["labels"]`` (B, 784) tokens are the real images, ``samples`` (B, 784)
        tokens the generated ones (PAD and any token other than white count as black)."""
        real = batch["labels"]
        if real.shape != samples.shape:
            raise ValueError(
                f"real images {tuple(real.shape)} and generated samples {tuple(samples.shape)} differ in shape"
            )
        fake = tokens_to_images(samples)  # (B, 1, 28, 28)
        self.fid.update(tokens_to_images(real), real=True)
        self.fid.update(fake, real=False)
        self.inception_score.update(fake)

    def compute(self) -> dict[str, Tensor]:
        """``{"fid", "inception_score", "inception_score_std"}`` scalars over everything added since the
        last `reset` (on all DDP ranks); NaN where there were too few images."""
        with warnings.catch_warnings():
            # Computing with no update in between (e.g. a rank without val batches) is handled above.
            warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
            fid = self.fid.compute()
            score, std = self.inception_score.compute()
        return {"fid": fid.float(), "inception_score": score, "inception_score_std": std}

    def reset(self) -> None:
        self.fid.reset()
        self.inception_score.reset()
