"""Unconditional generation against sampling depth: FID / Inception Score (MNIST) or validity / uniqueness
(Sudoku) of one sample per test input, after each of the given numbers of supervision steps.

    python benchmarks/generation.py --config logs/mnist/version_0/config.yaml \
        --ckpt_path logs/mnist/version_0/checkpoints/last.ckpt --steps 8 16 64 256

Each batch is rolled out once to the deepest step and read at every depth (`gram_lightning.sampling`), so the
depths see the same noise. `--repeats R` draws R samples per test input: more samples than test inputs, e.g. for
4x4 Sudoku, whose 288 grids a 144-board test split cannot all show. Writes generation.csv (a row per depth)
and samples_<steps>.png (the first 64 samples at each depth) into --out (default: <run dir>/generation), and
prints the table. Arguments after `--` go to the `gram` CLI (e.g.
`-- --data.init_args.num_test_images 2000`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from callbacks.generated_samples import samples_png
from gram_lightning.atomic import atomic_write_bytes, atomic_write_csv
from gram_lightning.run_loading import load_for_evaluation, print_table, split_overrides
from gram_lightning.sampling import sample_depths


@torch.no_grad()
def evaluate_depths(module, loader, steps: list[int], grid_size: int = 64, repeats: int = 1):
    """{depth: metrics dict} and {depth: first `grid_size` samples (K, L)} of `repeats` samples per input of
    `loader`, scored by the module's task (`Task.generation_metrics`)."""
    metrics = {d: module.task.generation_metrics().to(module.device) for d in steps}
    shown: dict[int, list[torch.Tensor]] = {d: [] for d in steps}
    with module.inference_rng():
        for batch in loader:
            batch = {k: v.to(module.device) for k, v in batch.items()}
            for depth, s in sample_depths(module, batch, repeats, steps, "first"):
                for j in range(repeats):
                    samples = s.preds[:, j]  # (B, L_out)
                    metrics[depth].update(batch, samples)
                    if sum(len(t) for t in shown[depth]) < grid_size:
                        shown[depth].append(samples.cpu())
    results = {d: {k: float(v) for k, v in m.compute().items()} for d, m in metrics.items()}
    return results, {d: torch.cat(t)[:grid_size] for d, t in shown.items()}


def main(argv: list[str] | None = None) -> None:
    own, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the run's config.yaml (or a task config)")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint to evaluate (EMA weights)")
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16, 64, 256], help="sampling depths in supervision steps")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the test inputs, each with fresh noise")
    parser.add_argument("--out", default=None, help="output folder (default: <run dir>/generation)")
    args = parser.parse_args(own)
    if min(args.steps) < 1:
        parser.error("--steps must be >= 1")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    sys.argv = sys.argv[:1]  # LightningCLI gets its arguments from `overrides`, not from this command line
    module, datamodule = load_for_evaluation(args.config, args.ckpt_path, overrides, "generation")
    if module.task.generation_metrics() is None:
        sys.exit(f"generation: {type(datamodule).__name__} is not an unconditional task (no generation_metrics)")

    start = time.perf_counter()
    results, shown = evaluate_depths(module, datamodule.test_dataloader(), sorted(set(args.steps)), repeats=args.repeats)
    seconds = time.perf_counter() - start
    num_samples = len(datamodule.test_dataloader().dataset) * args.repeats
    rows = [{"steps": d, "samples": num_samples, **m} for d, m in results.items()]
    for row in rows:
        if "unique_valid" in row:
            row["distinct_valid"] = round(row["unique_valid"] * num_samples)

    out = Path(args.out) if args.out else Path(args.ckpt_path).resolve().parents[1] / "generation"
    atomic_write_csv(out / "generation.csv", rows)
    for depth, samples in shown.items():
        picture = samples_png(module.task.render, torch.zeros_like(samples), samples)
        if picture is not None:
            atomic_write_bytes(out / f"samples_{depth}.png", picture)

    title = f"{type(datamodule).__name__}, {module.description}"
    print_table(f"{title} ({num_samples} samples per depth, {seconds:.0f} s on {module.device})", rows, list(rows[0]), ".4g")
    print(f"written to {out}/ (generation.csv, samples_<steps>.png)")


if __name__ == "__main__":
    main()
