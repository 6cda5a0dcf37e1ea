"""Evaluation noise that leaves the training RNG stream where it was."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class InferenceRNG:
    """Seeds the global RNG for an evaluation and restores the training state after it.

    A stack: callbacks sample under their own `scope` inside the validation loop's. Evaluation batches that carry
    each input's index draw keyed noise (`gram_lightning/keyed_noise.py`) and use the global RNG for nothing; the
    seed covers the rest (batches without an index).
    """

    def __init__(self) -> None:
        self._saved: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def enter(self, seed: int, device: torch.device) -> None:
        cuda = device.type == "cuda"
        self._saved.append((torch.get_rng_state(), torch.cuda.get_rng_state(device) if cuda else None))
        torch.manual_seed(seed)

    def exit(self, device: torch.device) -> None:
        cpu_state, cuda_state = self._saved.pop()
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, device)

    @contextmanager
    def scope(self, seed: int, device: torch.device) -> Iterator[None]:
        self.enter(seed, device)
        try:
            yield
        finally:
            self.exit(device)
