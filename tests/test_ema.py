"""RampedEMA: the decay ramp washes the first weights out of the average, in a real fit and across a resume."""

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import TINY_TRAINER, RandomBoards, tiny_net
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn

from callbacks.ema import RampedEMA, ramped_decay
from gram_lightning.module import GRAMModule


def ramped_share(updates: int) -> float:
    """Share of the first update's weights after `updates` updates while the ramp is below the decay:
    prod_{n=1}^{t-1} (1 + n) / (10 + n) = 10! t! / (t + 9)!."""
    return math.factorial(10) * math.factorial(updates) / math.factorial(updates + 9)


def first_weights_share(avg_fn, updates: int) -> float:
    """Average a 1-element parameter that is 1 at the first update and 0 at the other `updates` - 1."""
    param = torch.nn.Parameter(torch.ones(1))
    averaged = AveragedModel(torch.nn.ParameterList([param]), avg_fn=avg_fn)
    model = torch.nn.ParameterList([param])
    averaged.update_parameters(model)
    with torch.no_grad():
        param.zero_()
    for _ in range(updates - 1):
        averaged.update_parameters(model)
    return averaged.module[0].item()


@pytest.mark.parametrize("decay", [0.99, 0.9999])
def test_ramp_leaves_under_one_percent_of_the_first_weights(decay):
    updates = 50
    share = first_weights_share(RampedEMA(decay=decay)._kwargs["avg_fn"], updates)
    assert share == pytest.approx(ramped_share(updates), rel=1e-4) and share < 0.01
    stock = first_weights_share(get_ema_avg_fn(decay), updates)
    assert stock == pytest.approx(decay ** (updates - 1), rel=1e-4)  # 61% at 0.99, 99.5% at 0.9999


def test_ramp_rises_to_the_decay_and_stays():
    assert ramped_decay(0.9999, 1) == pytest.approx(2 / 11)
    assert ramped_decay(0.99, 890) == pytest.approx(0.99) and ramped_decay(0.99, 10**6) == 0.99
    assert ramped_decay(0.99, torch.tensor(5)).item() == pytest.approx(6 / 15)


def test_averaging_functions_cannot_be_passed():
    with pytest.raises(ValueError, match="avg_fn"):
        RampedEMA(avg_fn=get_ema_avg_fn(0.9))
    with pytest.raises(ValueError, match="decay"):
        RampedEMA(decay=1.5)




class TracedModule(GRAMModule):
    """A GRAMModule with a buffer that is 1 until the first optimizer step has been averaged and 0 after.

    The averaging is linear and, with use_buffers, applies to buffers as to weights, so the averaged tracer
    is exactly the share of the first update's weights in the averaged weights."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("tracer", torch.ones((), dtype=torch.float64))

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        self.tracer.zero_()  # module hooks run after the callbacks', so after the averaging of this step


def _fit(callbacks: list[L.Callback], max_steps: int, module: GRAMModule | None = None, ckpt_path: Path | None = None,
         **trainer_kwargs) -> L.Trainer:
    module = module or TracedModule(tiny_net(), warmup_steps=1)
    trainer = L.Trainer(**{**TINY_TRAINER, "max_steps": max_steps, "val_check_interval": 8,
                           "check_val_every_n_epoch": None, "limit_val_batches": 1, "num_sanity_val_steps": 0, "callbacks": callbacks, **trainer_kwargs})
    trainer.fit(module, RandomBoards(), ckpt_path=ckpt_path)
    return trainer


def test_fit_averages_out_the_first_weights_unlike_stock_ema():
    ramped, stock = RampedEMA(decay=0.9999), EMAWeightAveraging(decay=0.9999)
    a, b = _fit([ramped], 24), _fit([stock], 24)
    assert ramped._average_model.n_averaged.item() == 24
    # after fit the module holds the averaged weights (and the averaged tracer)
    assert a.lightning_module.tracer.item() == pytest.approx(ramped_share(24), rel=1e-6) and a.lightning_module.tracer < 0.01
    assert b.lightning_module.tracer.item() == pytest.approx(0.9999 ** 23, rel=1e-6)  # stock EMA: 99.8% first weights


def test_resume_continues_the_ramp(tmp_path):
    first = RampedEMA(decay=0.9999)
    # saved by the fit loop, not after it: at the end of fit the module holds the averaged weights
    _fit([first, ModelCheckpoint(dirpath=tmp_path, save_last=True)], 16, enable_checkpointing=True)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["averaging_state"]["n_averaged"].item() == 16

    seen = {}

    class RecordStart(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["n"] = second._average_model.n_averaged.item()

    second = RampedEMA(decay=0.9999)
    module = TracedModule(tiny_net(), warmup_steps=1)
    _fit([second, RecordStart(), ModelCheckpoint(dirpath=tmp_path, save_top_k=0)], 24, module,
         ckpt_path=tmp_path / "last.ckpt", enable_checkpointing=True)
    assert seen["n"] == 16 and second._average_model.n_averaged.item() == 24
    # a restarted count would copy the current (tracer 0) weights at the first update after the resume
    assert module.tracer.item() == pytest.approx(ramped_share(24), rel=1e-6)
