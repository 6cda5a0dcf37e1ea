"""Mean and range over seeds of runs' validation curves and test-split scaling tables.

    python benchmarks/seed_curves.py logs/nqueens8_cpu --metrics val/sample_acc val/exact_acc val/coverage \
        --out benchmarks/results/nqueens8-cpu-orbit

Runs are the version folders under the given log folder; a folder named `<model>_s<seed>` counts as one seed of
`<model>` (any other name is a model of its own). For each model it prints, at every validation step that all of
its seeds reached, each metric's mean and [min, max] over the seeds, then the same for the rows of each run's
`scaling/scaling.csv` (benchmarks/scaling.py). Writes curves.json and scaling.json into --out.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
from collections import defaultdict
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gram_lightning.atomic import atomic_write_json
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


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "seeds": len(values)}


def fmt(s: dict[str, float], percent: bool) -> str:
    scale, unit = (100, "%") if percent else (1, "")
    if s["seeds"] == 1:
        return f"{scale * s['mean']:.1f}{unit}"
    return f"{scale * s['mean']:.1f}{unit} ({scale * s['min']:.1f} to {scale * s['max']:.1f})"


def is_rate(name: str) -> bool:
    return not name.split("/")[-1].startswith(("conflict", "sample_conflict", "distinct", "N", "steps", "inputs"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdir", type=Path, help="a logger folder: logs/<name> with one version folder per run")
    parser.add_argument("--metrics", nargs="+", default=["val/sample_acc", "val/exact_acc", "val/pass_at_n", "val/coverage"])
    parser.add_argument("--out", type=Path, default=None, help="folder for curves.json and scaling.json")
    args = parser.parse_args(argv)
    runs = sorted(p for p in args.logdir.iterdir() if p.is_dir() and any(p.glob("events.out.tfevents.*")))
    if not runs:
        raise SystemExit(f"seed_curves: no runs with TensorBoard events under {args.logdir}")

    by_model: dict[str, list[Path]] = defaultdict(list)
    for run in runs:
        by_model[model_of(run.name)].append(run)

    curves: dict[str, dict] = {}
    for model, model_runs in sorted(by_model.items()):
        per_run = [scalars(run, args.metrics) for run in model_runs]
        steps = sorted(set.intersection(*(set(r.get(args.metrics[0], {})) for r in per_run)))
        rows = []
        for step in steps:
            row: dict = {"step": step}
            for tag in args.metrics:
                values = [r[tag][step] for r in per_run if step in r.get(tag, {})]
                if len(values) == len(per_run):
                    row[tag] = summary(values)
            rows.append(row)
        curves[model] = {"runs": [r.name for r in model_runs], "curve": rows}
        print_table(f"{model}: validation, mean (min to max) over {len(model_runs)} seeds ({', '.join(r.name for r in model_runs)})",
                    [{"step": r["step"], **{t: fmt(r[t], is_rate(t)) if t in r else "-" for t in args.metrics}} for r in rows],
                    ["step", *args.metrics])

    scaling: dict[str, list[dict]] = {}
    for model, model_runs in sorted(by_model.items()):
        tables = [list(csv.DictReader(f.open())) for run in model_runs if (f := run / "scaling" / "scaling.csv").is_file()]
        if not tables:
            continue
        rows = []
        for i, first in enumerate(tables[0]):
            row: dict = {"N": int(first["N"]), "steps": int(first["steps"])}
            for column in first:
                if column in ("N", "steps", "inputs"):
                    continue
                values = [float(t[i][column]) for t in tables if i < len(t) and t[i].get(column)]
                if values:
                    row[column] = summary(values)
            rows.append(row)
        scaling[model] = rows
        columns = [c for c in rows[0] if c not in ("N", "steps")]
        print_table(f"{model}: test split (benchmarks/scaling.py), mean (min to max) over {len(tables)} seeds",
                    [{"N": r["N"], "steps": r["steps"], **{c: fmt(r[c], is_rate(c)) for c in columns}} for r in rows],
                    ["N", "steps", *columns])

    if args.out is not None:
        atomic_write_json(args.out / "curves.json", curves)
        atomic_write_json(args.out / "scaling.json", scaling)
        print(f"written to {args.out}/ (curves.json, scaling.json)")


if __name__ == "__main__":
    main()
