"""SampleBoards draws with the weights validation used: the EMA's, not the raw ones."""

import lightning as L
import torch
from conftest import TINY_TRAINER, RandomBoards, tiny_net
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks.ema import RampedEMA
from callbacks.sample_boards import SampleBoards
from gram_lightning.module import GRAMModule


class RenderedBoards(RandomBoards):
    """Random 4x4 boards that render as grey levels; no checker, so frames are grey."""

    def render(self, inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return (output.float() / self.vocab_size).view(1, 4, 4).expand(3, 4, 4)


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def test_picture_is_drawn_with_the_ema_weights(tmp_path):
    ema, boards = RampedEMA(decay=0.99), SampleBoards(num_inputs=2, num_samples=3)
    drawn, after = [], []

    original = boards.picture

    def spy(trainer, pl_module, batch):
        drawn.append((trainer.global_step, flat(pl_module)))
        image = original(trainer, pl_module, batch)
        assert image is not None
        return image

    boards.picture = spy

    class AfterValidation(L.Callback):
        """Runs after every epoch-end hook, when the EMA callback has swapped the raw weights back."""

        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                after.append((trainer.global_step, flat(ema._average_model.module), flat(pl_module)))

    # the EMA callback first, as in the configs: its epoch-end swap runs before SampleBoards' epoch-end hook
    trainer = L.Trainer(**{**TINY_TRAINER, "max_steps": 12, "val_check_interval": 6, "check_val_every_n_epoch": None,
                           "limit_val_batches": 1, "num_sanity_val_steps": 1, "log_every_n_steps": 1,
                           "logger": TensorBoardLogger(tmp_path, name="", version=""),
                           "callbacks": [ema, boards, AfterValidation()]})
    trainer.fit(GRAMModule(tiny_net(), warmup_steps=1), RenderedBoards())

    assert [step for step, _ in drawn] == [step for step, *_ in after] == [6, 12]  # not in the sanity check
    for (_, weights), (_, averaged, raw) in zip(drawn, after):
        torch.testing.assert_close(weights, averaged, rtol=0, atol=0)
        assert not torch.allclose(weights, raw)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [e.step for e in events.Images("val/samples")] == [6, 12]
