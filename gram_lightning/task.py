"""The task interface: everything GRAM asks of a puzzle (or image) task, in one place.

Every DataModule that `gram` trains on implements `Task` beside Lightning's loaders (datamodules/*/data.py, and
`RandomBoards` in tests/conftest.py). The module, the sampler (`gram_lightning/sampling.py`), the metrics and the
callbacks call these members; none looks a hook up by name:

    DataModule (Task) -> GRAMModule (training, `sampling.sample_depths`) -> scoring (Task, SolveMetrics)
                      -> logger and callbacks

Batches are dicts of tensors:

- ``inputs`` (B, seq_len) long tokens; ``labels`` (B, out_len) long tokens, 0 (PAD) where nothing is asked;
- ``index`` (B,): each row's position in its split. Evaluation noise is keyed by it (an input gets the same
  samples in any batch, on any number of ranks); leave it out and evaluation noise comes from a fixed seed;
- optional ``num_solutions`` (B,): how many valid answers the input has (0: unknown), for coverage;
- optional ``puzzle_ids`` (B,): rows of the net's per-puzzle embedding table (ARC);
- ``pad`` (B,) bool, added by the distributed evaluation sampler (`datamodules.puzzle_data.EvenShards`).

The defaults cover the common case, so a new puzzle task is its data plus `check`::

    class EvenParity(L.LightningDataModule, Task):  # fill the blanks (1) of 8 bits (2 is 0, 3 is 1): even ones

        vocab_size, seq_len, out_len = 4, 8, 8

        def train_dataloader(self): ...  # and val / test: batches as above

        def check(self, inputs, outputs):  # (B, 8), (B, 8) -> (B,) bool
            keeps_givens = (inputs == 1) | (inputs == outputs)
            is_bit = (outputs == 2) | (outputs == 3)
            return keeps_givens.all(-1) & is_bit.all(-1) & ((outputs == 3).sum(-1) % 2 == 0)

`tests/test_task.py` trains and evaluates that task through the `gram` CLI.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from gram_lightning.errors import GramUserError


class Task:
    """What a DataModule tells GRAM about its task. Subclass it beside LightningDataModule and override what
    differs from the defaults; only `check` has none that fits a puzzle.

    Attributes:
        vocab_size: Token ids 0..vocab_size-1, PAD (0) included. Linked into the net by the `gram` CLI (as are the
            three below), so set it in ``__init__``, before any ``setup``.
        seq_len: L_in, the length of ``inputs``.
        out_len: L_out, the length of outputs and ``labels`` (graph coloring: n colours for n(n-1)/2 edge tokens).
        num_puzzle_ids: Rows of the net's per-puzzle embedding table that ``puzzle_ids`` index (ARC: tasks x
            variants); 0: none.
        reports_solve_metrics: Whether validation and `gram test` log `SolveMetrics` (exact_acc, sample_acc,
            coverage, ...). False for tasks without a notion of a right answer (MNIST images), which report their
            `generation_metrics` alone.
        violations_name: The name the violated constraints of `violations` are logged under (`<name>`,
            `sample_<name>` and both `_per_input`): graph coloring's "conflict_edges".
    """

    vocab_size: int
    seq_len: int
    out_len: int
    num_puzzle_ids: int = 0
    reports_solve_metrics: bool = True
    violations_name: str = "violations"

    def check(self, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """Whether each output is a valid answer to its input: satisfies every constraint and keeps the givens.

        Any of an input's valid answers counts, not only its label: accuracy, coverage, the vote's correctness and
        the halt and value heads' training targets all read it. A task that does not override it (an image
        generator; the tests' random boards) has its outputs judged by equality with the label (PAD ignored),
        and `checks_answers` is False.

        Args:
            inputs: (B, seq_len) tokens.
            outputs: (B, out_len) tokens, any id in the vocabulary (PAD included): reject what is not an answer.

        Returns:
            (B,) bool.
        """
        raise NotImplementedError(f"{type(self).__name__} has no checker: its answers are judged by their label")

    @property
    def checks_answers(self) -> bool:
        """Whether the task overrides `check` (else an output is right when it equals the label)."""
        return type(self).check is not Task.check

    def canonical(self, outputs: torch.Tensor) -> torch.Tensor:
        """The form in which two outputs are the same answer: the vote counts canonical forms, and distinct
        solutions and coverage tell answers apart by them. Identity by default; graph coloring renames the colours
        in order of first use, so that one colouring in several labellings is one answer.

        Args:
            outputs: (..., out_len) tokens.

        Returns:
            (..., out_len) tokens, the same shape.
        """
        return outputs

    def violations(self, inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor | None:
        """How many constraints each output violates, for tasks that count them (graph coloring: edges whose ends
        share a colour). None by default: nothing is counted or logged.

        Args:
            inputs: (B, seq_len) tokens.
            outputs: (B, out_len) tokens.

        Returns:
            (B,) counts, or None.
        """
        return None

    def solutions(self, index: torch.Tensor, split: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Every valid answer of the inputs ``index`` of ``split``, where the task enumerates them (Sudoku with
        several solutions, N-Queens, graph coloring). Coverage itself needs only their number, which batches carry
        as ``num_solutions``. None by default: the answers are not known.

        Args:
            index: (B,) rows of the split (a batch's ``index``).
            split: "train", "val" or "test".

        Returns:
            (B, S, out_len) answers, PAD beyond each input's count, and (B,) counts, on ``index``'s device; or None.
        """
        return None

    def generation_metrics(self) -> Metric | None:
        """A fresh metric of the chosen outputs as one set, for unconditional tasks (Sudoku: validity, uniqueness,
        novelty; MNIST: FID and Inception Score), or None (the default). Built once per evaluation stage, as it may
        be costly. Its ``update(batch, outputs)`` takes a batch and the (B, out_len) chosen outputs; ``compute()``
        returns named values, logged as `<stage>/<name>`, and its ``headline`` attribute names the one shown on the
        progress bar (or is None)."""
        return None

    def voting_metrics(self) -> Metric | None:
        """A fresh metric of all N samples of every input, for tasks that vote over an input's augmented copies
        (ARC's pass@k), or None (the default). Its ``update(batch, samples)`` takes a batch and its
        `gram_lightning.samples.Samples`; ``compute()`` and ``headline`` as for `generation_metrics`."""
        return None

    def render(self, inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor | None:
        """One output as a picture, for TensorBoard's `val/samples` and the sample files of `gram predict`.

        Args:
            inputs: (seq_len,) tokens of one input.
            output: (out_len,) tokens of an output (or the label) for it.

        Returns:
            (3, H, W) floats in [0, 1], or None (the default: the task has no picture, and nothing is drawn).
        """
        return None

    def format(self, output: torch.Tensor) -> str | None:
        """One output as text (`samples.txt` of `gram predict` on an unconditional task); None by default.

        Args:
            output: (out_len,) tokens.
        """
        return None

    def check_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Raise a ValueError, with a message a user can act on, when a checkpoint does not fit this data (ARC: the
        puzzle embeddings of other tasks or variants). Runs before any weight is loaded, after which the module
        checks the weights' shapes and finiteness. Nothing to check by default.

        Args:
            checkpoint: The checkpoint as `torch.load` reads it: ``state_dict`` (the weights), this DataModule's own
                state under its class's ``__qualname__`` (its ``state_dict()`` when it was saved), hyperparameters.
        """


def as_task(datamodule: Any) -> Task:
    """The task a module evaluates with: the DataModule itself, or the defaults when there is none (a module fitted
    on plain DataLoaders: outputs judged by their label)."""
    if datamodule is None:
        return Task()
    if not isinstance(datamodule, Task):
        raise GramUserError(f"{type(datamodule).__qualname__} does not implement gram_lightning.task.Task, the "
                            f"interface GRAM evaluates a task through (see that file)")
    return datamodule
