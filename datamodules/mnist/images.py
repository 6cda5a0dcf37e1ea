"""Binarized MNIST images as tokens: the token values, binarization, and tokens back to images.

Token conventions (shared with the model through ``vocab_size = 3``):

    0   PAD / unknown (every input cell: the model starts from a blank image)
    1   black pixel (background)
    2   white pixel (ink)

An image is a flat row-major sequence of 28 * 28 = 784 tokens.
"""

from __future__ import annotations

import numpy as np
import torch

PAD_TOKEN = 0
BLACK_TOKEN = 1
WHITE_TOKEN = 2
VOCAB_SIZE = 3
IMAGE_SIZE = 28
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE


def binarize(images: np.ndarray | torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Images -> (N, 784) uint8 tokens: 2 (white) where the pixel is > ``threshold``, else 1 (black).

    Args:
        images: (N, 28, 28), (N, 1, 28, 28) or (N, 784) pixels: uint8 0..255 (compared as value / 255)
            or floats in [0, 1].
        threshold: Brightness in [0, 1] above which a pixel is white.

    `tokens_to_images` goes back to {0, 1} images.
    """
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        # A 256-entry table of value / 255 > threshold: the same float comparison, one pass over the bytes.
        table = np.where(np.arange(256, dtype=np.float32) / 255 > np.float32(threshold), WHITE_TOKEN, BLACK_TOKEN)
        return torch.from_numpy(table.astype(np.uint8)[images.reshape(len(images), -1)])  # (N, 784)
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        return binarize(x.cpu().numpy(), threshold)
    return (1 + (x.reshape(len(x), -1).float() > threshold)).to(torch.uint8)  # (N, 784)


def tokens_to_images(tokens: torch.Tensor) -> torch.Tensor:
    """(B, 784) tokens -> (B, 1, 28, 28) float32 in {0, 1}: white (2) is 1, any other token 0."""
    if tokens.shape[-1] != NUM_PIXELS:
        raise ValueError(f"an MNIST image has {NUM_PIXELS} tokens, got shape {tuple(tokens.shape)}")
    return (tokens == WHITE_TOKEN).float().reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
