"""Depth x width scaling of a checkpoint: accuracy / coverage over supervision steps and sampled trajectories.

    python benchmarks/scaling.py --config logs/nqueens8/version_0/config.yaml \
        --ckpt_path logs/nqueens8/version_0/checkpoints/last.ckpt --widths 1 5 20 --steps 1 2 4 8 16 32

Writes scaling.csv (a row per N and depth), scaling_by_solutions.csv (by the input's number of valid
solutions, at the deepest step) and scaling.png into --out (default: next to the checkpoint's run), and prints
the table. Arguments after `--` go to the `gram` CLI (e.g. `-- --data.init_args.max_test_puzzles 200`).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

import torch
import yaml
from rich.console import Console
from rich.table import Table

from gram_lightning.atomic import atomic_write_text
from gram_lightning.cli import GramCLI
from gram_lightning.module import GRAMModule
from gram_lightning.scaling import evaluate_grid, plot


def load(config: str, ckpt_path: str, overrides: list[str]) -> GramCLI:
    if not Path(config).is_file():
        sys.exit(f"scaling: config not found: {config}")
    settings = yaml.safe_load(Path(config).read_text()) or {}
    for key in ("ckpt_path", "weights_only"):  # a run's saved config holds its fit subcommand's arguments
        settings.pop(key, None)
    cli = GramCLI(GRAMModule, subclass_mode_data=True, run=False, auto_configure_optimizers=False,
                  args=["--config", yaml.safe_dump(settings), "--trainer.logger", "false", *overrides])
    path = Path(ckpt_path)
    if not path.is_file():
        sys.exit(f"scaling: checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except Exception as error:  # a truncated or foreign file fails in many ways deep inside torch
        sys.exit(f"scaling: cannot read checkpoint {path}: it is corrupt or not a Lightning checkpoint ({type(error).__name__})")
    cli.model.load_state_dict(state)  # the EMA weights: EMAWeightAveraging saves them as the state_dict
    return cli


def write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the run's config.yaml (or a task config)")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint to evaluate (EMA weights)")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 5, 20], help="sampled trajectories per input")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32], help="supervision steps (depths)")
    parser.add_argument("--selection", default="vote", choices=["vote", "lprm", "halt", "first"])
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--out", default=None, help="output folder (default: <run dir>/scaling)")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if min(args.widths) < 1 or min(args.steps) < 1:
        parser.error("--widths and --steps must be >= 1")

    sys.argv = sys.argv[:1]  # LightningCLI gets its arguments from `overrides`, not from this command line
    cli = load(args.config, args.ckpt_path, overrides)
    module, datamodule = cli.model, cli.datamodule
    module.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    datamodule.prepare_data()
    datamodule.setup("test")
    module.attach_task(datamodule)
    loader = datamodule.test_dataloader() if args.split == "test" else datamodule.val_dataloader()

    start = time.perf_counter()
    result = evaluate_grid(module, loader, sorted(args.widths), sorted(args.steps), args.selection)
    seconds = time.perf_counter() - start
    rows = result.table()

    out = Path(args.out) if args.out else Path(args.ckpt_path).resolve().parents[1] / "scaling"
    write_csv(out / "scaling.csv", rows)
    if "coverage" in rows[0]:
        write_csv(out / "scaling_by_solutions.csv", result.by_num_solutions(max(args.steps), [1, 2, 3, 5, 9, 17]))
    title = f"{type(datamodule).__name__}, {module.net.noise_mode} noise, {args.selection}"
    plot(result, out / "scaling.png", title, trained_steps=module.net.N_sup)

    table = Table(title=f"{title} ({rows[0]['inputs']} {args.split} inputs, {seconds:.0f} s on {module.device})")
    columns = [c for c in ("N", "steps", "exact_acc", "pass_at_n", "distinct_solutions", "coverage", "conflict_edges") if c in rows[0]]
    for c in columns:
        table.add_column(c, justify="right")
    for r in rows:
        table.add_row(*(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns))
    Console().print(table)
    print(f"written to {out}/ (scaling.csv, scaling.png)")


if __name__ == "__main__":
    main()
