"""Evaluation noise keyed by example: the same draws for an input whichever batch, rank or device samples it.

A global RNG gives an input different noise depending on where it sits in a batch and which DDP rank sees it,
so an evaluation would change with the number of ranks and the batch size. Here every sampled row carries an
int64 key derived from (seed, the input's index in its split, the sample number j), and each draw is a
counter-based hash of (key, position): sample j of input i is the same at N = 8 and N = 32, on one rank or
eight, on a CPU or a GPU (up to the last bits of log / cos).

The hash is SplitMix64's finalizer, with wrapping int64 arithmetic; two 24-bit uniforms of each hash give two
normals by Box-Muller. Draws are bounded by sqrt(2 ln 2^24) = 5.8 standard deviations.
"""

from __future__ import annotations

import math

import torch


def _signed(value: int) -> int:
    """A 64-bit constant as the int64 that has its bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


_MIX_1 = _signed(0xBF58476D1CE4E5B9)
_MIX_2 = _signed(0x94D049BB133111EB)
_GOLDEN = _signed(0x9E3779B97F4A7C15)  # the Weyl increment: consecutive counters land far apart before mixing
_UNIT_24 = 2.0**-24


def _times_golden(count: int) -> int:
    """count x the Weyl increment, wrapped to int64 as tensor arithmetic would wrap it."""
    return _signed((count * _GOLDEN) % (1 << 64))


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic: it copies the sign bit)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finalizer: int64 -> int64, every output bit depending on every input bit."""
    x = x ^ _shift_right(x, 30)
    x = x * _MIX_1
    x = x ^ _shift_right(x, 27)
    x = x * _MIX_2
    return x ^ _shift_right(x, 31)


def derive(keys: torch.Tensor | None, tag: int) -> torch.Tensor | None:
    """Independent keys for the `tag`-th use of `keys` (a step, a transition, a draw); None stays None."""
    if keys is None:
        return None
    return mix(keys + _times_golden(tag + 1))


def sample_keys(seed: int, index: torch.Tensor, num_samples: int, stream: int = 0) -> torch.Tensor:
    """(B,) input indices -> (B * N,) keys, row b * N + j for sample j of input b (the order of
    `repeat_interleave(N)`). `stream` separates independent uses of the same inputs (e.g. prior and posterior
    rollouts)."""
    base = mix(mix(torch.full_like(index, seed, dtype=torch.int64) + _times_golden(stream)) + index.long())
    samples = torch.arange(num_samples, device=index.device, dtype=torch.int64)
    return mix(base[:, None] ^ mix(samples + 1)[None, :]).reshape(-1)


def keyed_normal(keys: torch.Tensor, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(R,) keys -> (R, *shape) standard normal draws; row r depends only on keys[r]."""
    size = math.prod(shape)
    pairs = (size + 1) // 2
    x = torch.arange(1, pairs + 1, device=keys.device, dtype=torch.int64).mul_(_GOLDEN).add(keys[:, None])
    x = mix(x)  # (R, pairs): one hash gives two uniforms, hence two normals
    radius = _shift_right(x, 40).float().add_(0.5).mul_(_UNIT_24).log_().mul_(-2.0).sqrt_()
    angle = (x & 0xFFFFFF).float().add_(0.5).mul_(2.0 * math.pi * _UNIT_24)
    z = torch.cat([radius * torch.cos(angle), radius.mul_(torch.sin(angle))], dim=1)[:, :size]
    return z.reshape(len(keys), *shape).to(dtype)


def keyed_uniform(keys: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """(R,) keys -> (R, *shape) uniforms in (0, 1) on a 2^-24 grid; row r depends only on keys[r]. The baselines'
    token draws (`gram_lightning/baselines/categorical.py`) use these."""
    size = math.prod(shape)
    x = torch.arange(1, size + 1, device=keys.device, dtype=torch.int64).mul_(_GOLDEN).add(keys[:, None])
    u = _shift_right(mix(x), 40).float().add_(0.5).mul_(_UNIT_24)
    return u.reshape(len(keys), *shape)


def uniform(rows: int, shape: tuple[int, ...], keys: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """(rows, *shape) uniforms in (0, 1): keyed per row when `keys` are given, else torch's RNG."""
    if keys is None:
        return torch.rand(rows, *shape, device=device)
    return keyed_uniform(keys, shape)


def normal_like(t: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
    """Standard normal noise shaped like t (R, ...): keyed per row when `keys` are given, else torch's RNG."""
    if keys is None:
        return torch.randn_like(t)
    return keyed_normal(keys, t.shape[1:], t.dtype)
