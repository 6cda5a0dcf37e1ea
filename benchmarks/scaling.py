"""Depth x width scaling of a checkpoint: accuracy / coverage over supervision steps and sampled trajectories.

    python benchmarks/scaling.py --config logs/nqueens8/version_0/config.yaml \
        --ckpt_path logs/nqueens8/version_0/checkpoints/last.ckpt --widths 1 5 20 --steps 1 2 4 8 16 32

Writes scaling.csv (a row per N and depth), scaling_by_solutions.csv (by the input's number of valid
solutions, at the deepest step) and scaling.png into --out (default: next to the checkpoint's run), and prints
the table. `--residual mean` or `none` rolls a GRAM out with its prior's mean or no residual instead of a
prior draw. Arguments after `--` go to the `gram` CLI (e.g. `-- --data.init_args.max_test_puzzles 200`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import get_args

from gram_lightning.atomic import atomic_write_csv
from gram_lightning.run_loading import load_for_evaluation, print_table, split_overrides
from gram_lightning.scaling import InferenceResidual, evaluate_grid, plot, set_inference_residual


def main(argv: list[str] | None = None) -> None:
    own, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the run's config.yaml (or a task config)")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint to evaluate (EMA weights)")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 5, 20], help="sampled trajectories per input")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32], help="supervision steps (depths)")
    parser.add_argument("--selection", default="vote", choices=["vote", "lprm", "halt", "first"])
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--out", default=None, help="output folder (default: <run dir>/scaling)")
    parser.add_argument("--residual", default="sampled", choices=get_args(InferenceResidual),
                        help="what a GRAM with learned noise adds to u at inference: a prior draw (as trained), the "
                             "prior's mean alone, or nothing (the core alone)")
    args = parser.parse_args(own)
    if min(args.widths) < 1 or min(args.steps) < 1:
        parser.error("--widths and --steps must be >= 1")

    sys.argv = sys.argv[:1]  # LightningCLI gets its arguments from `overrides`, not from this command line
    module, datamodule = load_for_evaluation(args.config, args.ckpt_path, overrides, "scaling")
    if args.residual != "sampled":
        try:
            set_inference_residual(module, args.residual)
        except ValueError as error:
            parser.error(f"--residual {args.residual}: {error}")
    loader = datamodule.test_dataloader() if args.split == "test" else datamodule.val_dataloader()

    start = time.perf_counter()
    result = evaluate_grid(module, loader, sorted(args.widths), sorted(args.steps), args.selection)
    seconds = time.perf_counter() - start
    rows = result.table()

    out = Path(args.out) if args.out else Path(args.ckpt_path).resolve().parents[1] / "scaling"
    atomic_write_csv(out / "scaling.csv", rows)
    if "coverage" in rows[0]:
        atomic_write_csv(out / "scaling_by_solutions.csv", result.by_num_solutions(max(args.steps), [1, 2, 3, 5, 9, 17]))
    title = f"{type(datamodule).__name__}, {module.description}, {args.selection}"
    plot(result, out / "scaling.png", title, trained_steps=module.default_depth)

    violations = result.violations_name  # graph coloring's conflict_edges
    columns = [c for c in ("N", "steps", "sample_acc", "exact_acc", "pass_at_n", "distinct_solutions", "coverage",
                           f"sample_{violations}", violations) if c in rows[0]]
    print_table(f"{title} ({rows[0]['inputs']} {args.split} inputs, {seconds:.0f} s on {module.device})", rows, columns)
    print(f"written to {out}/ (scaling.csv, scaling.png)")


if __name__ == "__main__":
    main()
