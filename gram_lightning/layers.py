"""Building blocks of the recursive core: RMSNorm, RoPE, attention, SwiGLU, the two block types.

Follows TRM's conventions (post-norm, no biases, weightless RMSNorm with eps 1e-5, LeCun-normal
init) so that a GRAM with noise switched off is the TRM baseline, parameter for parameter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

NORM_EPS = 1e-5


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    # Weightless, computed in float32 so bf16 activations do not lose the scale.
    return F.rms_norm(x.float(), (x.shape[-1],), eps=NORM_EPS).to(x.dtype)


def lecun_normal_(weight: torch.Tensor) -> torch.Tensor:
    fan_in = weight.shape[1]
    return nn.init.trunc_normal_(weight, std=1.0 / math.sqrt(fan_in), a=-2.0 / math.sqrt(fan_in), b=2.0 / math.sqrt(fan_in))


class Linear(nn.Linear):
    """Bias-free linear layer with LeCun-normal init (TRM's CastedLinear)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False):
        super().__init__(in_features, out_features, bias=bias)

    def reset_parameters(self) -> None:
        lecun_normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


def swiglu_hidden(dim: int, expansion: float) -> int:
    # TRM: 2/3 of the expanded width (SwiGLU has two input projections), rounded up to 256.
    return 256 * math.ceil(round(expansion * dim * 2 / 3) / 256)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, out_dim: int | None = None):
        super().__init__()
        self.gate_up = Linear(dim, 2 * hidden)
        self.down = Linear(hidden, out_dim or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, max_len: int, theta: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (L, hd/2)
        angles = torch.cat([angles, angles], dim=-1)  # (L, hd)
        # Derived from the shapes, so kept out of the state dict.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        # x: (B, H, L, hd) at positions start .. start + L - 1 (start > 0: the new tokens of a KV-cached decode)
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        end = start + x.shape[-2]
        cos, sin = self.cos[start:end].to(x.dtype), self.sin[start:end].to(x.dtype)
        return x * cos + rotated * sin


class KVCache:
    """The keys and values of the positions an attention layer has seen, for decoding one token at a time."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None  # (B, H, L_seen, hd)
        self.v: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], dim=-2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=-2)
        return self.k, self.v


class Attention(nn.Module):
    """Multi-head self-attention, optionally with RoPE: non-causal by default (GRAM), or under a mask with a KV cache
    (the baselines' prefix-LM)."""

    def __init__(self, dim: int, num_heads: int, seq_len: int, rope: bool, rope_theta: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = Linear(dim, 3 * dim)
        self.out = Linear(dim, dim)
        self.rope = RotaryEmbedding(dim // num_heads, seq_len, rope_theta) if rope else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D). `mask` (L, L_seen + L) bool, True where a query may attend a key; `cache`: the
        keys and values of earlier positions, extended by these (x then holds the positions after them)."""
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads)
        start = 0 if cache is None else cache.length
        if self.rope is not None:
            q, k = self.rope(q, start), self.rope(k, start)
        if cache is not None:
            k, v = cache.extend(k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, hd)
        return self.out(rearrange(y, "b h l d -> b l (h d)"))


class TokenMixer(nn.Module):
    """TRM's "MLP-T": a SwiGLU across the sequence axis in place of attention."""

    def __init__(self, seq_len: int, expansion: float):
        super().__init__()
        self.mlp = SwiGLU(seq_len, swiglu_hidden(seq_len, expansion))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.transpose(1, 2)).transpose(1, 2)  # (B, L, D)


class Block(nn.Module):
    """Post-norm block: x = norm(x + mix(x)); x = norm(x + SwiGLU(x))."""

    def __init__(self, dim: int, num_heads: int, seq_len: int, expansion: float, core: str, rope: bool, rope_theta: float):
        super().__init__()
        if core == "attention":
            self.mixer: nn.Module = Attention(dim, num_heads, seq_len, rope, rope_theta)
        elif core == "mlp_t":
            self.mixer = TokenMixer(seq_len, expansion)
        else:
            raise ValueError(f"core must be 'attention' or 'mlp_t', got {core!r}")
        self.mlp = SwiGLU(dim, swiglu_hidden(dim, expansion))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """`mask` and `cache` reach the attention (see `Attention.forward`); the token mixer has neither."""
        mixed = self.mixer(x) if mask is None and cache is None else self.mixer(x, mask, cache)
        x = rms_norm(x + mixed)
        return rms_norm(x + self.mlp(x))


class ReasoningNet(nn.Module):
    """f_L / f_H: f(state, injection) = blocks(state + injection), optionally followed by a final norm."""

    def __init__(self, num_layers: int, final_norm: bool, **block_kwargs):
        super().__init__()
        self.blocks = nn.ModuleList(Block(**block_kwargs) for _ in range(num_layers))
        self.final_norm = final_norm

    def forward(self, state: torch.Tensor, injection: torch.Tensor) -> torch.Tensor:
        x = state + injection  # (B, L, D)
        for block in self.blocks:
            x = block(x)
        # Post-norm blocks already end in a norm; the extra one matters only for pre-norm blocks, whose
        # unnormalized output would otherwise let the latent's scale grow across the recursion.
        return rms_norm(x) if self.final_norm else x
