"""GRAM over images: the paper's conv patch encoder and a matching decoder around the same recursive core.

Pixels are tokens (binarized MNIST: 1 black, 2 white, 0 unknown). The encoder embeds each pixel, runs
2 x [Conv 5x5 (pad 2), SiLU, GroupNorm] over the image and folds p x p patches into one latent position
each (28x28 with p = 2: 196 positions of width D). The decoder unfolds a latent position back into its
p x p pixels and runs the mirrored convolutions to per-pixel logits, so neighbouring patches can agree
on a stroke that crosses their border.

Only the three modality modules of `GRAM` change: the input embedding, the target embedding the
posterior reads, and the decoder. The recursion, noise, heads and losses are the ones of `model.py`.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from gram_lightning.model import GRAM


def conv_stack(in_channels: int, channels: int, groups: int) -> nn.Sequential:
    """2 x [Conv 5x5 (pad 2), SiLU, GroupNorm]: the paper's MNIST encoder body."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 5, padding=2), nn.SiLU(), nn.GroupNorm(groups, channels),
        nn.Conv2d(channels, channels, 5, padding=2), nn.SiLU(), nn.GroupNorm(groups, channels),
    )


class PatchEncoder(nn.Module):
    """Pixel tokens (B, H*W) -> patch embeddings (B, (H/p)*(W/p), D).

    The output starts with RMS 1/sqrt(D) per element, the scale of a token embedding, which `GRAM`
    multiplies by sqrt(D) for the input (as TRM does) and feeds unscaled to the posterior.
    """

    def __init__(self, vocab_size: int, image_size: int, patch_size: int, channels: int, dim: int, groups: int):
        super().__init__()
        self.image_size, self.patch_size = image_size, patch_size
        self.pixel_embed = nn.Embedding(vocab_size, channels)
        self.body = conv_stack(channels, channels, groups)
        fan_in = channels * patch_size * patch_size
        self.proj = nn.Linear(fan_in, dim, bias=False)
        nn.init.trunc_normal_(self.proj.weight, std=1.0 / math.sqrt(fan_in * dim))  # GroupNorm output has unit variance

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.pixel_embed(tokens)  # (B, H*W, C)
        x = rearrange(x, "b (h w) c -> b c h w", h=self.image_size)
        x = self.body(x)  # (B, C, H, W)
        p = self.patch_size
        x = rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)
        return self.proj(x)  # (B, N_patches, D)


class PatchDecoder(nn.Module):
    """Latent positions (B, (H/p)*(W/p), D) -> pixel logits (B, H*W, V)."""

    def __init__(self, vocab_size: int, image_size: int, patch_size: int, channels: int, dim: int, groups: int):
        super().__init__()
        self.image_size, self.patch_size = image_size, patch_size
        self.proj = nn.Linear(dim, channels * patch_size * patch_size, bias=False)
        self.body = conv_stack(channels, channels, groups)
        self.head = nn.Conv2d(channels, vocab_size, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        p, side = self.patch_size, self.image_size // self.patch_size
        x = self.proj(h)  # (B, N_patches, p*p*C)
        x = rearrange(x, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=side, p1=p, p2=p)
        x = self.head(self.body(x))  # (B, V, H, W)
        return rearrange(x, "b v h w -> b (h w) v")


class ImageGRAM(GRAM):
    """GRAM on square images of pixel tokens, with the paper's conv patch encoder and a matching decoder.

    Takes every argument of `GRAM` (see there), plus the image ones below. `seq_len` is the number of
    pixels (linked from the DataModule: 784 for MNIST); the core runs on (image_size / patch_size)^2
    latent positions after the puzzle prefix.

    Args:
        vocab_size: Pixel token ids, 0 being unknown / PAD. Linked from the DataModule.
        seq_len: Pixels per image, image_size^2. Linked from the DataModule.
        out_len: Must equal seq_len (or be None): the model generates the whole image.
        image_size: Side of the square image in pixels.
        patch_size: Side of the pixel patch folded into one latent position.
        conv_channels: Channels of the encoder's and decoder's convolutions.
        conv_groups: GroupNorm groups of those convolutions.
    """

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        out_len: int | None = None,
        image_size: int = 28,
        patch_size: int = 2,
        conv_channels: int = 64,
        conv_groups: int = 8,
        **kwargs,
    ):
        if seq_len != image_size * image_size:
            raise ValueError(f"ImageGRAM: seq_len {seq_len} is not image_size^2 = {image_size}^2; set image_size to the data's side")
        if out_len not in (None, seq_len):
            raise ValueError(f"ImageGRAM: out_len must equal seq_len ({seq_len}): the output is the whole image, got {out_len}")
        if image_size % patch_size:
            raise ValueError(f"ImageGRAM: image_size {image_size} is not a multiple of patch_size {patch_size}")
        if conv_channels % conv_groups:
            raise ValueError(f"ImageGRAM: conv_channels {conv_channels} is not a multiple of conv_groups {conv_groups}")
        num_patches = (image_size // patch_size) ** 2
        super().__init__(vocab_size, num_patches, None, **kwargs)
        self.image_size, self.patch_size, self.num_pixels = image_size, patch_size, seq_len
        shape = dict(vocab_size=vocab_size, image_size=image_size, patch_size=patch_size, channels=conv_channels, groups=conv_groups)
        D = self.hidden_size
        # GRAM's embed_input / embed_target / decode call these three modules; replacing them is all it takes.
        self.token_embed = PatchEncoder(dim=D, **shape)
        if self.target_embed is not None:
            self.target_embed = PatchEncoder(dim=D, **shape)
        self.decoder = PatchDecoder(dim=D, **shape)
