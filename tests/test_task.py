"""The task interface: a new task that is only its data plus `check` trains and is evaluated through the `gram` CLI,
and the scorer judges, canonicalizes and counts through the task."""

import lightning as L
import pytest
import torch
from conftest import build_cli
from torch.utils.data import DataLoader

from gram_lightning.errors import GramUserError
from gram_lightning.sampling import Readout, score
from gram_lightning.task import Task, as_task

BLANK, ZERO, ONE = 1, 2, 3


class EvenParity(L.LightningDataModule, Task):
    """Fill the blanks (1) of 8 bits (2 is 0, 3 is 1) so that the number of ones is even; any filling that keeps
    the given bits is right, so an input with k >= 1 blanks has 2^(k-1) answers. Nothing but data and `check`."""

    vocab_size, seq_len, out_len = 4, 8, 8

    def __init__(self, num_train: int = 256, num_test: int = 32, batch_size: int = 32):
        super().__init__()
        self.num_train, self.num_test, self.batch_size = num_train, num_test, batch_size

    def _split(self, count: int, seed: int) -> list[dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(seed)
        bits = torch.randint(0, 2, (count, 8), generator=g)
        bits[:, -1] = bits[:, :-1].sum(-1) % 2  # an even number of ones
        blank = torch.rand(count, 8, generator=g) < 0.4
        inputs = torch.where(blank, BLANK, bits + ZERO)
        blanks = blank.sum(-1)
        num_solutions = torch.where(blanks > 0, 2 ** (blanks - 1).clamp(min=0), 1)
        return [{"inputs": x, "labels": y, "index": torch.tensor(i), "num_solutions": n}
                for i, (x, y, n) in enumerate(zip(inputs, bits + ZERO, num_solutions))]

    def train_dataloader(self):
        return DataLoader(self._split(self.num_train, 0), batch_size=self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self):
        return DataLoader(self._split(self.num_test, 1), batch_size=self.batch_size)

    test_dataloader = predict_dataloader = val_dataloader

    def check(self, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        is_bit = (outputs == ZERO) | (outputs == ONE)
        keeps_givens = (inputs == BLANK) | (inputs == outputs)
        return is_bit.all(-1) & keeps_givens.all(-1) & ((outputs == ONE).sum(-1) % 2 == 0)


def test_a_task_of_data_and_check_trains_and_is_evaluated_through_the_cli(tmp_path):
    cli = build_cli([
        "--data.class_path", "test_task.EvenParity", "--model.net.class_path", "gram_lightning.model.GRAM",
        "--model.net.init_args.hidden_size", "16", "--model.net.init_args.num_heads", "2",
        "--model.net.init_args.num_layers", "1", "--model.net.init_args.N_sup", "2",
        "--model.net.init_args.puzzle_prefix_len", "2", "--model.warmup_steps", "1",
        "--model.val_num_samples", "2", "--model.num_samples", "4",
        "--trainer.max_steps", "4", "--trainer.val_check_interval", "2", "--trainer.accelerator", "cpu",
        "--trainer.devices", "1", "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.callbacks", "[]", "--trainer.default_root_dir", str(tmp_path),
    ])
    assert (cli.model.net.vocab_size, cli.model.net.seq_len, cli.model.net.out_len) == (4, 8, 8)  # linked from the task
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.model.task is cli.datamodule
    assert {"val/exact_acc", "val/sample_acc", "val/coverage", "val/exact_acc_posterior"} <= set(cli.trainer.callback_metrics)
    (metrics,) = cli.trainer.test(cli.model, cli.datamodule, verbose=False)
    assert {"test/exact_acc", "test/sample_acc", "test/pass_at_n", "test/distinct_solutions", "test/coverage"} <= set(metrics)
    assert not any("violations" in k for k in metrics)  # the defaults count no violations
    predictions = cli.trainer.predict(cli.model, cli.datamodule)
    batch = next(iter(cli.datamodule.test_dataloader()))
    first = predictions[0]
    assert first["samples"].shape == (32, 4, 8)
    # Right means the task's check, not the label: every sample is judged by `check`.
    judged = cli.datamodule.check(batch["inputs"].repeat_interleave(4, 0), first["samples"].reshape(-1, 8))
    assert torch.equal(first["is_solution"], judged.view(32, 4))


class Coloured(Task):
    """Outputs right when all tokens are equal; the same answer up to renaming the token; violations: tokens that
    differ from the first."""

    def check(self, inputs, outputs):
        return (outputs == outputs[:, :1]).all(-1)

    def canonical(self, outputs):
        return torch.zeros_like(outputs)

    def violations(self, inputs, outputs):
        return (outputs != outputs[:, :1]).sum(-1)


def _readout(preds: torch.Tensor, value: torch.Tensor) -> Readout:
    """The outputs `preds` (B*N, L) after one step, with the value head's scores."""
    return Readout(preds, torch.ones(len(preds), dtype=torch.long), value, torch.zeros(len(preds)))


def test_the_scorer_judges_canonicalizes_and_counts_through_the_task():
    preds = torch.tensor([[2, 2], [3, 3], [2, 4]])  # one input, N = 3
    inputs, labels = torch.ones(3, 2, dtype=torch.long), torch.full((3, 2), 4)
    s = score(Coloured(), _readout(preds, torch.tensor([0.1, 0.9, 0.5])), inputs, labels, 3, "vote")
    assert s.is_solution.tolist() == [[True, True, False]] and s.violations.tolist() == [[0, 0, 1]]
    assert s.distinct_solutions.tolist() == [1]  # [2, 2] and [3, 3] are one answer
    assert s.chosen_index.tolist() == [1] and s.score.item() == 1.0  # all three share one key; the value breaks the tie

    plain = score(Task(), _readout(preds, torch.zeros(3)), inputs, labels, 3, "first")  # the defaults
    assert plain.is_solution.tolist() == [[False, False, False]] and plain.violations is None
    assert torch.equal(plain.keys, plain.preds)
    assert score(Task(), _readout(preds, torch.zeros(3)), inputs, preds, 3, "first").is_solution.all()
    with pytest.raises(ValueError, match="no checker"):
        score(Task(), _readout(preds, torch.zeros(3)), inputs, None, 3, "first")


def test_the_interface_defaults():
    task = Task()
    outputs = torch.ones(2, 3, dtype=torch.long)
    assert not task.checks_answers and Coloured().checks_answers
    assert task.canonical(outputs) is outputs and task.violations(outputs, outputs) is None
    assert task.solutions(torch.tensor([0]), "test") is None
    assert task.generation_metrics() is None and task.voting_metrics() is None
    assert task.render(outputs[0], outputs[0]) is None and task.format(outputs[0]) is None
    assert task.reports_solve_metrics and task.num_puzzle_ids == 0
    task.check_checkpoint({"state_dict": {}})  # nothing to check
    with pytest.raises(GramUserError, match="does not implement gram_lightning.task.Task"):
        as_task(L.LightningDataModule())
