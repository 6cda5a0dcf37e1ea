"""The transformer of the generative baselines: token and segment embeddings, the post-norm blocks of `layers.py`
(the blocks GRAM's core is made of, so that width, heads and expansion mean the same thing), a linear decoder to
the task's vocabulary; its image variant `PatchTransformer` (ImageGRAM's conv patch encoder and decoder around the
same blocks); and `TokenNet`, the base of the baselines' nets, over [input tokens | output tokens]."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from gram_lightning.errors import GramUserError
from gram_lightning.image_model import PatchDecoder, PatchEncoder
from gram_lightning.layers import Block, KVCache, Linear
from gram_lightning.task_net import TaskNet


def attention_blocks(hidden_size: int, num_heads: int, expansion: float, num_layers: int, max_len: int, rope: bool,
                     rope_theta: float) -> nn.ModuleList:
    """`num_layers` post-norm attention blocks of GRAM's core over up to `max_len` positions."""
    return nn.ModuleList(
        Block(dim=hidden_size, num_heads=num_heads, seq_len=max_len, expansion=expansion, core="attention", rope=rope,
              rope_theta=rope_theta)
        for _ in range(num_layers)
    )


class SequenceTransformer(nn.Module):
    """tokens (B, L) and segments (B, L) -> logits (B, L, V_out).

    Args:
        num_tokens: Embedded token ids (the task's vocabulary plus the model's own: BOS, MASK).
        num_outputs: Decoded classes (the task's vocabulary).
        max_len: Longest sequence (RoPE's table).
        hidden_size, num_heads, expansion, num_layers, rope, rope_theta: As GRAM's.
    """

    def __init__(self, num_tokens: int, num_outputs: int, max_len: int, hidden_size: int, num_heads: int,
                 expansion: float, num_layers: int, rope: bool, rope_theta: float):
        super().__init__()
        D = hidden_size
        self.hidden_size = D
        self.token_embed = nn.Embedding(num_tokens, D)
        self.segment_embed = nn.Embedding(2, D)  # 0: the input, 1: the output part
        for table in (self.token_embed, self.segment_embed):
            nn.init.trunc_normal_(table.weight, std=1.0 / math.sqrt(D))
        self.blocks = attention_blocks(D, num_heads, expansion, num_layers, max_len, rope, rope_theta)
        self.decoder = Linear(D, num_outputs)

    def forward(self, tokens: torch.Tensor, segments: torch.Tensor, mask: torch.Tensor | None = None,
                caches: list[KVCache] | None = None) -> torch.Tensor:
        """`mask` (L, L_seen + L) bool, True where a position may attend; `caches` one per block (decoding)."""
        # Scaled by sqrt(D) as GRAM's input embedding: unit RMS into the first post-norm block.
        x = math.sqrt(self.hidden_size) * (self.token_embed(tokens) + self.segment_embed(segments))  # (B, L, D)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, None if caches is None else caches[i])
        return self.decoder(x)


class PatchTransformer(nn.Module):
    """Pixel tokens (B, H*W) -> pixel logits (B, H*W, V_out), the transformer running on (H/p)*(W/p) patch positions:
    ImageGRAM's conv patch encoder (`image_model.py`) folds each p x p patch of embedded pixels into one position,
    the blocks of `SequenceTransformer` mix the positions, ImageGRAM's conv decoder unfolds them back into per-pixel
    logits. With p = 2 a 28 x 28 image costs 196 attention positions rather than 784, and the convolutions let a
    pixel's logits read its masked and unmasked neighbours across patch borders.

    Args:
        num_tokens: Embedded pixel token ids (the task's vocabulary plus the model's own: MASK).
        num_outputs: Decoded classes (the task's vocabulary).
        image_size, patch_size, conv_channels, conv_groups: As ImageGRAM's.
        hidden_size, num_heads, expansion, num_layers, rope, rope_theta: As GRAM's.
    """

    def __init__(self, num_tokens: int, num_outputs: int, image_size: int, patch_size: int, conv_channels: int,
                 conv_groups: int, hidden_size: int, num_heads: int, expansion: float, num_layers: int, rope: bool,
                 rope_theta: float):
        super().__init__()
        D = hidden_size
        self.hidden_size = D
        shape = dict(image_size=image_size, patch_size=patch_size, channels=conv_channels, dim=D, groups=conv_groups)
        self.encoder = PatchEncoder(vocab_size=num_tokens, **shape)
        num_patches = (image_size // patch_size) ** 2
        self.blocks = attention_blocks(D, num_heads, expansion, num_layers, num_patches, rope, rope_theta)
        self.decoder = PatchDecoder(vocab_size=num_outputs, **shape)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # The encoder's output has the RMS of a token embedding; scaled by sqrt(D) as SequenceTransformer's.
        x = math.sqrt(self.hidden_size) * self.encoder(pixels)  # (B, N_patches, D)
        for block in self.blocks:
            x = block(x)
        return self.decoder(x)


class TokenNet(TaskNet):
    """A `SequenceTransformer` over [x_1 .. x_Lin | the output part] that decodes the output positions; one token id
    beyond the task's vocabulary (`extra_token`) is the model's own (the AR model's BOS, MDLM's [MASK]).

    Args:
        vocab_size: Number of token ids, 0 being PAD. Linked from the DataModule by the CLI.
        seq_len: Input length in tokens. Linked from the DataModule.
        out_len: Output length in tokens; None means the same as the input. Linked from the DataModule.
        num_puzzle_ids: Must be 0: per-puzzle embeddings (ARC) are GRAM's. Linked from the DataModule.
        hidden_size: Width D (a baseline config inherits the task's GRAM width).
        num_heads: Attention heads.
        expansion: SwiGLU expansion, as GRAM's.
        num_layers: Transformer blocks.
        pos_encoding: "rope" or "none".
        rope_theta: RoPE base.
    """

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        out_len: int | None = None,
        num_puzzle_ids: int = 0,
        hidden_size: int = 512,
        num_heads: int = 8,
        expansion: float = 4.0,
        num_layers: int = 2,
        pos_encoding: Literal["rope", "none"] = "rope",
        rope_theta: float = 10000.0,
    ):
        super().__init__()
        name = type(self).__name__
        if num_puzzle_ids:
            raise GramUserError(f"{name} has no per-puzzle embeddings: the generative baselines do not run on ARC")
        for arg, value in dict(vocab_size=vocab_size, seq_len=seq_len, hidden_size=hidden_size, num_layers=num_layers).items():
            if value < 1:
                raise GramUserError(f"{name}: {arg} must be >= 1, got {value}")
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.out_len = out_len or seq_len
        self.extra_token = vocab_size
        total = seq_len + self.out_len
        self.body = SequenceTransformer(vocab_size + 1, vocab_size, total, hidden_size, num_heads, expansion,
                                        num_layers, pos_encoding == "rope", rope_theta)
        self.register_buffer("segments", (torch.arange(total) >= seq_len).long(), persistent=False)
