"""What an N-Queens checkpoint puts on each cell: is the run on the plateau where its output copies the input?

Every N-Queens run starts where its argmax output is the input itself, the given queens and no new one, so each
sample misses every queen the input removed (5.26 queen conflicts per 8x8 sample, 7.09 per 10x10). For a model
that does not pick one of an input's completions, the cross-entropy against a randomly drawn completion is lowest
at the marginal: each free cell a queen with the share of completions that put one there. Where completions
disagree those shares stay below 1/2 and the argmax adds no queen, however well the marginal is learned. This
script measures where a checkpoint stands, one sample per input at the trained depth:

- queens the argmax places against the queens given, and the share of outputs that copy the input;
- the queen probability on the free cells, under the normalisation the run trains with (stablemax or softmax):
  its sum per board (the marginal puts the missing queens there), the largest per board (the argmax places a
  queen only above 1/2), and its mean on the free cells where the label has a queen against all free cells;

for all inputs and by their number of completions (one, or several).

    python benchmarks/nqueens_plateau.py --config logs/nqueens10_cpu/trm_s0/config.yaml \\
        --ckpt_path logs/nqueens10_cpu/trm_s0/checkpoints/epoch=5-step=1500.ckpt [more checkpoints of the run]

Prints a table and writes it as JSON to --out (default: <run dir>/plateau.json). Arguments after `--` go to the
`gram` CLI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from datamodules.nqueens.boards import QUEEN_TOKEN
from gram_lightning.atomic import atomic_write_json
from gram_lightning.keyed_noise import sample_keys
from gram_lightning.losses import token_log_probs
from gram_lightning.module import GRAMModule
from gram_lightning.run_loading import load_for_evaluation, print_table, split_overrides
from gram_lightning.sampling import without_padding

GROUPS = {"all": lambda k: k >= 1, "one completion": lambda k: k == 1, "several": lambda k: k > 1}


def cell_stats(inputs: torch.Tensor, labels: torch.Tensor, queen_probs: torch.Tensor, preds: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per board, from (B, L) input and label tokens, queen probabilities and argmax tokens: (B,) tensors of the
    queens given and placed, whether the output copies the input, and the free cells' queen probability (sum, max,
    mean on the label's queens)."""
    given, placed = inputs == QUEEN_TOKEN, preds == QUEEN_TOKEN
    free = ~given
    label_queens = (labels == QUEEN_TOKEN) & free
    on_free = queen_probs * free
    return {
        "queens_given": given.sum(1).float(),
        "queens_placed": placed.sum(1).float(),
        "copies_input": (placed == given).all(1).float(),
        "free_prob_sum": on_free.sum(1),
        "free_prob_max": on_free.max(1).values,
        "label_queen_prob": (queen_probs * label_queens).sum(1) / label_queens.sum(1).clamp(min=1),
        "free_cell_prob": on_free.sum(1) / free.sum(1).clamp(min=1),
    }


def summarise(stats: dict[str, torch.Tensor], solved: torch.Tensor, num_solutions: torch.Tensor) -> list[dict]:
    """One row per group of inputs (all, one completion, several): each statistic's mean over its boards."""
    rows = []
    for group, member in GROUPS.items():
        keep = member(num_solutions)
        if not keep.any():
            continue
        row = {"inputs": int(keep.sum()), "group": group, "solved": solved[keep].float().mean().item()}
        row.update({name: value[keep].mean().item() for name, value in stats.items()})
        rows.append(row)
    return rows


@torch.no_grad()
def measure(config: str, ckpt_path: str, overrides: list[str], split: str) -> list[dict]:
    """`summarise` over every input of `split` for one checkpoint, one prior sample per input."""
    module, datamodule = load_for_evaluation(config, ckpt_path, overrides, "nqueens_plateau")
    if not hasattr(datamodule, "board_size"):
        sys.exit(f"nqueens_plateau: {config} is not an N-Queens run (its data is {type(datamodule).__name__})")
    if not isinstance(module, GRAMModule):
        sys.exit(f"nqueens_plateau: {config} trains {type(module).__name__}; this reads GRAM's and TRM's output logits")
    step = torch.load(ckpt_path, map_location="cpu", weights_only=True).get("global_step")
    loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    parts: dict[str, list[torch.Tensor]] = {}
    device = module.device
    with module.evaluating():
        for batch in loader:
            batch = without_padding({k: v.to(device) for k, v in batch.items()})
            if batch is None:
                continue
            keys = sample_keys(module.inference_seed, batch["index"], 1, stream=0)
            (_, out), = module.generate(batch["inputs"], [module.net.N_sup], keys, batch.get("puzzle_ids"))
            queen_probs = token_log_probs(out.logits, module.elbo.kind).exp()[..., QUEEN_TOKEN].float()
            preds = out.preds
            stats = cell_stats(batch["inputs"], batch["labels"], queen_probs, preds)
            stats["solved"] = datamodule.check(batch["inputs"], preds).float()
            stats["num_solutions"] = batch["num_solutions"]
            for name, value in stats.items():
                parts.setdefault(name, []).append(value.cpu())
    merged = {name: torch.cat(values) for name, values in parts.items()}
    solved, num_solutions = merged.pop("solved"), merged.pop("num_solutions")
    return [{"step": step, **row} for row in summarise(merged, solved, num_solutions)]


def main(argv: list[str] | None = None) -> None:
    own, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the run's config.yaml")
    parser.add_argument("--ckpt_path", required=True, nargs="+", help="checkpoints of the run (EMA weights)")
    parser.add_argument("--split", default="val", choices=["val", "test"], help="the validation inputs or the whole test split")
    parser.add_argument("--out", default=None, help="JSON file (default: <run dir>/plateau.json)")
    args = parser.parse_args(own)
    sys.argv = sys.argv[:1]  # LightningCLI gets its arguments from `overrides`, not from this command line
    rows = [row for path in args.ckpt_path for row in measure(args.config, path, overrides, args.split)]
    print_table(f"N-Queens cells, {args.split} inputs: queen probability under the training loss", rows,
                ["step", "group", "inputs", "solved", "queens_given", "queens_placed", "copies_input",
                 "free_prob_sum", "free_prob_max", "label_queen_prob", "free_cell_prob"])
    print("free_prob_sum / _max: the free cells' queen probability summed / largest per board; label_queen_prob: its\n"
          "mean on the free cells where the label has a queen, free_cell_prob on every free cell.")
    out = Path(args.out) if args.out else Path(args.config).parent / "plateau.json"
    atomic_write_json(out, rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
