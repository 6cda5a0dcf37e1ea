"""EMA of the weights whose decay ramps up with the number of averages, so the random initial net washes out."""

from __future__ import annotations

from typing import Any, Callable

import torch
from lightning.pytorch.callbacks import EMAWeightAveraging

AvgFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def ramped_decay(decay: float, num_averaged: int | torch.Tensor) -> float | torch.Tensor:
    """The decay of the `num_averaged`-th average: min(decay, (1 + n) / (10 + n)).

    Args:
        decay: The ceiling the ramp rises to.
        num_averaged: Updates before this one, the first (which copies the weights) included: n = 1 at the first
            average. A tensor gives a float64 tensor on its device, so the update never waits on the host.
    """
    if isinstance(num_averaged, torch.Tensor):
        n = num_averaged.to(torch.float64)
        return torch.clamp((1 + n) / (10 + n), max=decay)
    return min(decay, (1 + num_averaged) / (10 + num_averaged))


def get_ramped_ema_avg_fn(decay: float) -> AvgFn:
    """The `avg_fn` of a torch `AveragedModel` that averages with `ramped_decay`.

    Args:
        decay: The ceiling of the ramp.
    """

    @torch.no_grad()
    def ramped_ema_update(ema_param: torch.Tensor, current_param: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        d = ramped_decay(decay, num_averaged)
        return d * ema_param + (1 - d) * current_param

    return ramped_ema_update


class RampedEMA(EMAWeightAveraging):
    """Lightning's EMA of the weights with TensorFlow's `ExponentialMovingAverage` ramp on the decay.

    Lightning's `EMAWeightAveraging` copies the weights at the first update, then averages with a constant decay d
    and no bias correction, so after t averages the copied weights, nearly the random initial net, still make up
    d^t of the result: at d 0.9999 that is 18% after 17,100 steps and 0.15% after 65,000, and validation and the
    checkpoints see that blend. Here the n-th average uses min(decay, (1 + n) / (10 + n)), so while the ramp is
    below `decay` the copied weights' share after t averages is 10! (t + 1)! / (t + 10)! (under 1e-9 after 49) and
    the average weighs the weights of a fraction x of the way through the run about as x^8, centred on its last
    tenth. The ramp reaches `decay` at n = (10 d - 1) / (1 - d) (89,990 at 0.9999, 890 at 0.99); from there on it
    is the plain EMA of that decay.

    n counts averages (the `AveragedModel`'s `n_averaged`), not optimizer steps, so `update_every_n_steps` and
    `update_starting_at_step` delay the ramp with the averaging. `n_averaged` is a buffer of the averaged model and
    travels with the checkpoint, so a resumed run continues the ramp where it stopped.

    Args:
        device: Device of the averaged model (default: the LightningModule's); "cpu" spares accelerator memory.
        use_buffers: Average the buffers too (else they are copied from the current model).
        decay: The ceiling of the ramped decay.
        update_every_n_steps: Average after every n-th optimizer step.
        update_starting_at_step: First optimizer step (zero-based) averaged; None: from the first.
        update_starting_at_epoch: Also average after each epoch from this one on; None: never per epoch.
        kwargs: Other keyword arguments of torch's `AveragedModel` (not `avg_fn` / `multi_avg_fn`: the ramp is the
            averaging).
    """

    def __init__(
        self,
        device: torch.device | str | int | None = None,
        use_buffers: bool = True,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        update_starting_at_epoch: int | None = None,
        **kwargs: Any,
    ):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"RampedEMA: decay must be in [0, 1], got {decay}")
        # jsonargparse follows **kwargs into AveragedModel and may pass its unset arguments as None.
        for name in ("avg_fn", "multi_avg_fn"):
            if kwargs.pop(name, None) is not None:
                raise ValueError(f"RampedEMA: the ramped decay is the averaging; do not pass {name}")
        super().__init__(device=device, use_buffers=use_buffers, decay=decay, update_every_n_steps=update_every_n_steps,
                         update_starting_at_step=update_starting_at_step,
                         update_starting_at_epoch=update_starting_at_epoch, **kwargs)
        self.decay = decay
        self._kwargs["avg_fn"] = get_ramped_ema_avg_fn(decay)
