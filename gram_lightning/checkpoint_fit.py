"""Whether a checkpoint fits the run asked to load it, said in one line a user can act on, before torch's size
mismatch or a NaN in the metrics would say it worse."""

from __future__ import annotations

from typing import Any

import torch

from gram_lightning.errors import GramUserError, NonFiniteError, checkpoint_nonfinite
from gram_lightning.task import as_task

# Net settings a mismatch message names when they differ between the checkpoint and this run.
NET_SETTINGS = ("vocab_size", "seq_len", "out_len", "num_puzzle_ids", "hidden_size", "num_layers", "core",
                "puzzle_prefix_len", "noise")


class CheckpointMismatchError(GramUserError):
    """A checkpoint that does not fit the data it is asked to run on (e.g. ARC tasks it has no embedding for)."""


def _net_args(net: Any) -> dict[str, Any]:
    """The net's settings in saved hyperparameters: the CLI's {"class_path", "init_args"} (else none)."""
    return dict(net.get("init_args") or {}) if isinstance(net, dict) else {}


def check_checkpoint_fits(checkpoint: dict[str, Any], ours: dict[str, torch.Tensor], hparams: dict[str, Any],
                          strict: bool, datamodule: Any = None) -> None:
    """Raise a one-line error for a checkpoint that does not fit this run: the task's own check first
    (`Task.check_checkpoint`; ARC: the tasks the puzzle embeddings were trained on), then weights of another shape
    (another task or net size), then NaN / infinite weights (saved after training diverged).

    Args:
        checkpoint: As `torch.load` reads it.
        ours: The state dict of the module that would load it.
        hparams: That module's hyperparameters (the net's settings, for the message).
        strict: Missing and unexpected keys are errors (the module's `strict_loading`); shapes must agree anyway.
        datamodule: The run's DataModule (a `Task`), or None.
    """
    if datamodule is not None:
        try:
            as_task(datamodule).check_checkpoint(checkpoint)
        except ValueError as error:
            raise CheckpointMismatchError(str(error)) from None
    data_name = type(datamodule).__qualname__ if datamodule is not None else None
    theirs = checkpoint.get("state_dict") or {}
    differ = [k for k in ours if k in theirs and tuple(getattr(theirs[k], "shape", ())) != tuple(ours[k].shape)]
    missing, extra = [k for k in ours if k not in theirs], [k for k in theirs if k not in ours]
    if not strict:
        missing, extra = [], []
    if differ or missing or extra:
        data = checkpoint.get("datamodule_hyper_parameters") or {}
        task = data.get("_class_path", "other data")
        if "board_size" in data:
            task += f" (board_size {data['board_size']})"
        trained_net, our_net = (_net_args(h.get("net")) for h in (checkpoint.get("hyper_parameters") or {}, hparams))
        differ_args = [k for k in NET_SETTINGS if k in trained_net and k in our_net and trained_net[k] != our_net[k]]
        examples = [f"{k}: {list(theirs[k].shape)} in the checkpoint, {list(ours[k].shape)} here" for k in differ[:2]]
        examples += [f"{k} missing from the checkpoint" for k in missing[:2]]
        examples += [f"{k} not in this net" for k in extra[:2]]
        if differ_args:
            trained = ", ".join(f"{k} {trained_net[k]}" for k in differ_args)
            here = ", ".join(f"{k} {our_net[k]}" for k in differ_args)
            what = f"with {trained}; this run{' on ' + data_name if data_name else ''} builds {here}"
        else:
            what = "with another net"
        raise CheckpointMismatchError(
            f"the checkpoint was trained on {task} {what} ({'; '.join(examples)}): run it with the config of the "
            f"training run (config.yaml in its log folder)"
        )
    bad = checkpoint_nonfinite(checkpoint)
    if bad:
        raise NonFiniteError(
            f"the checkpoint holds NaN or infinite weights ({', '.join(bad)}): it was saved after training "
            f"diverged; use an earlier checkpoint"
        )
