"""Mean and range over seeds of runs' validation curves and test-split scaling tables.

    python benchmarks/seed_curves.py logs/nqueens8_cpu --metrics val/sample_acc val/exact_acc val/coverage \
        --out benchmarks/results/nqueens8-cpu-orbit

Runs are the version folders under the given log folder; a folder named `<model>_s<seed>` counts as one seed of
`<model>` (any other name is a model of its own). For each model it prints, at every validation step that all of
its seeds reached, each metric's mean and [min, max] over the seeds, then the same for the rows of each run's
`scaling/scaling.csv` (benchmarks/scaling.py; `--scaling` names another subfolder, e.g. a later checkpoint's
`--out`). Writes curves.json, scaling.json and curves_by_seed.csv (every run's validations, a row per run, step
and metric) into --out.

Each validation row also gives the training examples drawn by then (`train/examples`, mean over seeds): GRAM keeps
an example in its carry for up to N_sup steps where AR and MDLM draw a fresh batch every step, so models compare by
data seen as well as by steps. For runs logged without that counter, `--examples_per_step gram=32 ar=128` gives a
model's examples per step (GRAM or TRM without early halting: batch / N_sup).
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
from collections import defaultdict
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gram_lightning.atomic import atomic_write_csv, atomic_write_json
from gram_lightning.run_loading import print_table

SEED_SUFFIX = re.compile(r"^(?P<model>.+)_s(?P<seed>\d+)$")


def model_of(version: str) -> str:
    match = SEED_SUFFIX.match(version)
    return match["model"] if match else version


def scalars(run: Path, tags: list[str]) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} from a run's TensorBoard event files."""
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for events in sorted(run.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in tags:
            if tag in acc.Tags()["scalars"]:
                for event in acc.Scalars(tag):
                    out[tag][event.step] = event.value
    return out


EXAMPLES = "train/examples"


def examples_at(logged: dict[int, float], step: int) -> float | None:
    """The examples counter at `step`: its last logged value at or before that step."""
    before = [s for s in logged if s <= step]
    return logged[max(before)] if before else None


def per_step_rates(pairs: list[str]) -> dict[str, int]:
    rates = {}
    for pair in pairs:
        model, _, rate = pair.partition("=")
        if not rate.isdigit():
            raise SystemExit(f"seed_curves: --examples_per_step takes MODEL=N (e.g. gram=32), got {pair!r}")
        rates[model] = int(rate)
    return rates


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "seeds": len(values)}


def fmt(s: dict[str, float], percent: bool) -> str:
    scale, unit = (100, "%") if percent else (1, "")
    if s["seeds"] == 1:
        return f"{scale * s['mean']:.1f}{unit}"
    return f"{scale * s['mean']:.1f}{unit} ({scale * s['min']:.1f} to {scale * s['max']:.1f})"


def is_rate(name: str) -> bool:
    """Whether a metric is a fraction, printed in percent (counts such as conflict edges or queen conflicts are not)."""
    leaf = name.split("/")[-1]
    return "conflict" not in leaf and not leaf.startswith(("distinct", "N", "steps", "inputs"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdir", type=Path, help="a logger folder: logs/<name> with one version folder per run")
    parser.add_argument("--metrics", nargs="+", default=["val/sample_acc", "val/exact_acc", "val/pass_at_n", "val/coverage"])
    parser.add_argument("--out", type=Path, default=None, help="folder for curves.json, scaling.json and curves_by_seed.csv")
    parser.add_argument("--scaling", default="scaling", help="each run's subfolder holding scaling.csv (benchmarks/scaling.py --out)")
    parser.add_argument("--examples_per_step", nargs="+", default=[], metavar="MODEL=N",
                        help="examples per training step of a model whose runs did not log train/examples")
    args = parser.parse_args(argv)
    rates = per_step_rates(args.examples_per_step)
    runs = sorted(p for p in args.logdir.iterdir() if p.is_dir() and any(p.glob("events.out.tfevents.*")))
    if not runs:
        raise SystemExit(f"seed_curves: no runs with TensorBoard events under {args.logdir}")

    by_model: dict[str, list[Path]] = defaultdict(list)
    for run in runs:
        by_model[model_of(run.name)].append(run)

    curves: dict[str, dict] = {}
    by_seed: list[dict] = []
    for model, model_runs in sorted(by_model.items()):
        per_run = [scalars(run, [*args.metrics, EXAMPLES]) for run in model_runs]
        for run, logged in zip(model_runs, per_run):
            seed = match["seed"] if (match := SEED_SUFFIX.match(run.name)) else ""
            by_seed += [{"model": model, "seed": seed, "step": step, "metric": tag, "value": value}
                        for tag in args.metrics for step, value in sorted(logged.get(tag, {}).items())]
        steps = sorted(set.intersection(*(set(r.get(args.metrics[0], {})) for r in per_run)))
        rows = []
        for step in steps:
            row: dict = {"step": step}
            if model in rates:  # validation logs at global step - 1: `step + 1` training steps have run
                row["examples"] = summary([float((step + 1) * rates[model])])
            elif all(r.get(EXAMPLES) for r in per_run):
                seen = [examples_at(r[EXAMPLES], step) for r in per_run]
                if None not in seen:
                    row["examples"] = summary(seen)
            for tag in args.metrics:
                values = [r[tag][step] for r in per_run if step in r.get(tag, {})]
                if len(values) == len(per_run):
                    row[tag] = summary(values)
            rows.append(row)
        curves[model] = {"runs": [r.name for r in model_runs], "curve": rows}
        print_table(f"{model}: validation, mean (min to max) over {len(model_runs)} seeds ({', '.join(r.name for r in model_runs)})",
                    [{"step": r["step"], "examples": f"{r['examples']['mean']:,.0f}" if "examples" in r else "-",
                      **{t: fmt(r[t], is_rate(t)) if t in r else "-" for t in args.metrics}} for r in rows],
                    ["step", "examples", *args.metrics])

    scaling: dict[str, list[dict]] = {}
    for model, model_runs in sorted(by_model.items()):
        tables = [list(csv.DictReader(f.open())) for run in model_runs if (f := run / args.scaling / "scaling.csv").is_file()]
        if not tables:
            continue
        # Rows pair up by (N, steps); a cell that some seed's table lacks is left out rather than averaged over
        # fewer seeds.
        keyed = [{(r["N"], r["steps"]): r for r in t} for t in tables]
        rows = []
        for key, first in keyed[0].items():
            if not all(key in k for k in keyed):
                continue
            row: dict = {"N": int(first["N"]), "steps": int(first["steps"])}
            for column in first:
                if column in ("N", "steps", "inputs"):
                    continue
                values = [float(k[key][column]) for k in keyed if k[key].get(column)]
                if values:
                    row[column] = summary(values)
            rows.append(row)
        if not rows:
            continue
        scaling[model] = rows
        columns = [c for c in rows[0] if c not in ("N", "steps")]
        print_table(f"{model}: test split (benchmarks/scaling.py), mean (min to max) over {len(tables)} seeds",
                    [{"N": r["N"], "steps": r["steps"], **{c: fmt(r[c], is_rate(c)) for c in columns}} for r in rows],
                    ["N", "steps", *columns])

    if args.out is not None:
        atomic_write_json(args.out / "curves.json", curves)
        atomic_write_json(args.out / "scaling.json", scaling)
        atomic_write_csv(args.out / "curves_by_seed.csv", by_seed)
        print(f"written to {args.out}/ (curves.json, scaling.json, curves_by_seed.csv)")


if __name__ == "__main__":
    main()
