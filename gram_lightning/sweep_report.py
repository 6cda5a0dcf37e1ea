"""The results of a sweep, or of any folder of runs: trials.csv (a row per trial or run), trials.png (the objective
per trial and against each swept value) and the best run's command line.

A sweep's folder (logs/<sweep>/, with study.db) is read from its Optuna study: the swept values, the state, the
objective and the metrics each trial recorded when it ended. Any other folder is read run by run
(<folder>/<version>/): the last value of each validation metric in its TensorBoard event files, test_metrics.json
(`gram test`), and as "swept values" the config.yaml settings that differ between the runs.
"""

from __future__ import annotations

import csv
import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gram_lightning.errors import GramUserError

DEFAULT_METRIC = "val/exact_acc"
REPORTED_PREFIXES = ("val/", "test/")  # the metrics of a row; training metrics are step noise
MAX_PLOTTED_PARAMS = 8


@dataclass
class Run:
    """One row of the report: a sweep trial or a run folder."""

    number: int
    name: str  # "trial_<number>", or the run folder's path inside the reported folder
    state: str  # Optuna's trial state, or "-" for a plain run
    params: dict[str, Any]
    objective: float | None
    metrics: dict[str, float]
    wall_time_s: float | None
    step: int | None
    log_dir: str
    command: list[str] | None
    error: str | None = None
    log_params: set[str] = field(default_factory=set)  # parameters searched on a log scale


def report(target: str, storage: str | None = None, metric: str | None = None, direction: str | None = None) -> Path:
    """Write trials.csv and trials.png into the folder of `target` (a sweep's folder, a sweep file or a folder of
    runs), print the best runs and the best one's command line; returns the CSV's path."""
    folder, storage = locate(Path(target), storage)
    if storage is not None:
        runs, metric, direction = study_runs(folder, storage, metric, direction)
    else:
        metric, direction = metric or DEFAULT_METRIC, direction or "maximize"
        runs = folder_runs(folder, metric)
    if not runs:
        raise GramUserError(f"no runs in {folder}: expected version folders with config.yaml, TensorBoard event "
                            "files or test_metrics.json")
    params = list(dict.fromkeys(k for run in runs for k in run.params))
    csv_path = folder / "trials.csv"
    write_csv(runs, params, csv_path)
    png_path = folder / "trials.png"
    plot(runs, params, metric, png_path)
    print_summary(runs, params, metric, direction, csv_path, png_path)
    return csv_path


def locate(target: Path, storage: str | None) -> tuple[Path, str | None]:
    """The report's folder and the study storage it reads (None: a folder of plain runs)."""
    if target.is_file() and target.suffix in (".yaml", ".yml"):  # a sweep file: its folder under logs/
        from gram_lightning.sweep_spec import load_sweep

        target = Path("logs") / load_sweep(target).name
    if not target.is_dir():
        raise GramUserError(f"nothing to report: {target} is not a folder")
    if storage is None and (target / "study.db").is_file():
        storage = f"sqlite:///{(target / 'study.db').resolve()}"
    return target, storage


# ---- a sweep's study ----


def study_runs(folder: Path, storage: str, metric: str | None, direction: str | None):
    """The study's trials as rows, with the sweep's metric and direction unless given."""
    import optuna

    from callbacks.optuna_pruning import FINAL_METRICS, FINAL_STEP, engine_kwargs
    from gram_lightning.sweep import COMMAND, ERROR, LOG_DIR, WALL_TIME

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        rdb = optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs(storage))
        names = optuna.get_all_study_names(storage=rdb)
    except Exception as error:
        raise GramUserError(f"cannot read the study storage {storage}: {type(error).__name__}: "
                            f"{(str(error).splitlines() or [''])[0]}") from None
    name = folder.name if folder.name in names else (names[0] if len(names) == 1 else None)
    if name is None:
        raise GramUserError(f"{storage} holds the studies {', '.join(names) or '(none)'}, none named {folder.name}")
    study = optuna.load_study(study_name=name, storage=rdb)
    sweep = study.user_attrs.get("sweep") or {}
    metric = metric or sweep.get("metric") or DEFAULT_METRIC
    direction = direction or sweep.get("direction") or study.direction.name.lower()
    log_params = {k for k, v in (sweep.get("params") or {}).items() if v.get("log")}
    trials = study.get_trials(deepcopy=False)
    # A trial whose worker died runs again as a new trial: (the last attempt) -> its rerun.
    rerun_as = {t.system_attrs["retry_history"][-1]: t.number for t in trials if t.system_attrs.get("retry_history")}
    runs = []
    for trial in trials:
        attrs = trial.user_attrs
        error = attrs.get(ERROR)
        if trial.number in rerun_as:
            error = f"{error or 'its worker stopped'}; run again as trial_{rerun_as[trial.number]}"
        log_dir = attrs.get(LOG_DIR) or str(folder / f"trial_{trial.number}")
        metrics = attrs.get(FINAL_METRICS)
        if metrics is None:  # a trial that did not end: what its event files hold so far
            metrics = last_scalars(Path(log_dir))
        objective = trial.value if trial.value is not None else metrics.get(metric)
        if objective is None and trial.intermediate_values:
            objective = trial.intermediate_values[max(trial.intermediate_values)]
        wall = attrs.get(WALL_TIME)
        if wall is None and trial.datetime_start and trial.datetime_complete:
            wall = (trial.datetime_complete - trial.datetime_start).total_seconds()
        runs.append(Run(number=trial.number, name=f"trial_{trial.number}", state=trial.state.name,
                        params=dict(trial.params), objective=objective, metrics=reported(metrics, metric),
                        wall_time_s=wall, step=attrs.get(FINAL_STEP), log_dir=log_dir,
                        command=attrs.get(COMMAND), error=error, log_params=log_params))
    return runs, metric, direction


# ---- a folder of plain runs ----


def folder_runs(folder: Path, metric: str) -> list[Run]:
    """Every run folder under `folder` (itself, its children or grandchildren) as a row."""
    markers = ("config.yaml", "test_metrics.json", "events.out.tfevents.*")
    found = {p.parent for depth in ("", "*/", "*/*/") for m in markers for p in folder.glob(depth + m)}
    run_dirs = sorted(found, key=lambda p: _natural(str(p.relative_to(folder))))
    configs = {d: flat_config(d / "config.yaml") for d in run_dirs}
    differing = differing_keys(list(configs.values()))
    runs = []
    for number, run_dir in enumerate(run_dirs):
        metrics, wall, step = last_scalars(run_dir, with_time=True)
        test = run_dir / "test_metrics.json"
        if test.is_file():
            try:
                metrics.update(json.loads(test.read_text()).get("metrics", {}))
            except (json.JSONDecodeError, AttributeError):
                pass
        config = run_dir / "config.yaml"
        runs.append(Run(number=number, name=str(run_dir.relative_to(folder)) or ".", state="-",
                        params={k: configs[run_dir].get(k) for k in differing}, objective=metrics.get(metric),
                        metrics=reported(metrics, metric), wall_time_s=wall, step=step, log_dir=str(run_dir),
                        command=["gram", "fit", "--config", str(config)] if config.is_file() else None))
    return runs


def last_scalars(run_dir: Path, with_time: bool = False):
    """{tag: last value} of a run folder's TensorBoard scalars; with_time: also (wall seconds, last step)."""
    metrics: dict[str, float] = {}
    first = last = step = None
    if any(run_dir.glob("events.out.tfevents.*")):
        from tensorboard.backend.event_processing import event_accumulator as ea

        guidance = {ea.SCALARS: 0, ea.IMAGES: 1, ea.HISTOGRAMS: 1, ea.TENSORS: 1, ea.AUDIO: 1,
                    ea.COMPRESSED_HISTOGRAMS: 1}  # every scalar, as little as possible of the rest
        events = ea.EventAccumulator(str(run_dir), size_guidance=guidance)
        try:
            events.Reload()
        except Exception:  # a truncated event file of a killed run: what was read so far
            pass
        for tag in events.Tags().get("scalars", []):
            values = events.Scalars(tag)
            if values:
                metrics[tag] = values[-1].value
                first = min(first, values[0].wall_time) if first is not None else values[0].wall_time
                last = max(last, values[-1].wall_time) if last is not None else values[-1].wall_time
                step = max(step, values[-1].step) if step is not None else values[-1].step
    if not with_time:
        return metrics
    return metrics, (last - first if first is not None else None), step


def flat_config(path: Path) -> dict[str, Any]:
    """A config.yaml as {dotted key: value}; lists as one JSON value."""
    if not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return {}
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            flat[prefix] = json.dumps(node) if isinstance(node, list) else node

    walk(config, "")
    return flat


# Keys that differ between any two runs without being a choice of the experiment.
_NOT_SETTINGS = ("trainer.logger", "trainer.callbacks", "ckpt_path")


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    """Settings whose value is not the same in every run (absent counts as a value)."""
    if len(configs) < 2:
        return []
    keys = dict.fromkeys(k for c in configs for k in c)
    return [k for k in keys if not k.startswith(_NOT_SETTINGS)
            and len({json.dumps(c.get(k), default=str) for c in configs}) > 1]


def reported(metrics: dict[str, float], metric: str) -> dict[str, float]:
    """The metrics a row shows: validation and test ones, without the objective (its own column)."""
    return {k: float(v) for k, v in sorted(metrics.items()) if k.startswith(REPORTED_PREFIXES) and k != metric}


# ---- output ----


def write_csv(runs: list[Run], params: list[str], path: Path) -> None:
    metric_keys = sorted({k for run in runs for k in run.metrics})
    columns = ["number", "name", "state", *params, "objective", *metric_keys, "wall_time_s", "step", "log_dir", "error"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for run in runs:
            writer.writerow([run.number, run.name, run.state, *(_cell(run.params.get(k)) for k in params),
                             _cell(run.objective), *(_cell(run.metrics.get(k)) for k in metric_keys),
                             _cell(run.wall_time_s), _cell(run.step), run.log_dir, run.error or ""])


def plot(runs: list[Run], params: list[str], metric: str, path: Path) -> None:
    """The objective per trial, then against each swept value (the first MAX_PLOTTED_PARAMS), coloured by state."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = params[:MAX_PLOTTED_PARAMS]
    panels = 1 + len(shown)
    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    states = list(dict.fromkeys(run.state for run in runs))
    colours = {"COMPLETE": "tab:blue", "PRUNED": "tab:gray", "FAIL": "tab:red", "RUNNING": "tab:orange",
               "-": "tab:blue"}

    def scatter(ax, x_of, runs_with_x) -> None:
        for state in states:
            points = [(x_of(run), run.objective) for run in runs_with_x if run.state == state
                      and run.objective is not None and math.isfinite(run.objective)]
            if points:
                xs, ys = zip(*points)
                ax.scatter(xs, ys, s=22, color=colours.get(state, "tab:purple"), label=state.lower(), alpha=0.85)

    ax = flat[0]
    scatter(ax, lambda run: run.number, runs)
    ax.set_xlabel("trial" if any(run.state != "-" for run in runs) else "run")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per trial")
    if len(states) > 1 or states[0] != "-":
        ax.legend(fontsize=7)
    for ax, key in zip(flat[1:], shown):
        values = [run.params.get(key) for run in runs]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None)
        if numeric:
            scatter(ax, lambda run: run.params.get(key), [run for run in runs if run.params.get(key) is not None])
            positive = [v for v in values if v is not None and v > 0]
            # A log range, or listed values spanning orders of magnitude (a grid of betas), reads on a log axis.
            if key in runs[0].log_params or (len(positive) == len(values) and max(positive) >= 20 * min(positive)):
                ax.set_xscale("log")
        else:
            labels = list(dict.fromkeys(_cell(v) for v in values))
            scatter(ax, lambda run: labels.index(_cell(run.params.get(key))), runs)
            ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        ax.set_xlabel(key, fontsize=8)
        ax.set_ylabel(metric)
    for ax in flat[panels:]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def best_run(runs: list[Run], direction: str) -> Run | None:
    """The finished run with the best objective."""
    candidates = [run for run in runs if run.state in ("COMPLETE", "-") and run.objective is not None
                  and math.isfinite(run.objective)]
    if not candidates:
        return None
    pick = max if direction == "maximize" else min
    return pick(candidates, key=lambda run: run.objective)


def print_summary(runs: list[Run], params: list[str], metric: str, direction: str, csv_path: Path,
                  png_path: Path, top: int = 10) -> None:
    from rich.console import Console
    from rich.table import Table

    counts: dict[str, int] = {}
    for run in runs:
        counts[run.state] = counts.get(run.state, 0) + 1
    states = ", ".join(f"{n} {state.lower()}" for state, n in counts.items() if state != "-")
    ranked = sorted((run for run in runs if run.objective is not None and math.isfinite(run.objective)),
                    key=lambda run: run.objective, reverse=direction == "maximize")
    table = Table(title=f"{len(runs)} runs" + (f" ({states})" if states else "") + f", best {min(top, len(ranked))} "
                        f"by {metric} ({direction})")
    for column in ("run", "state", *params, metric, "wall time"):
        table.add_column(column, justify="right")
    for run in ranked[:top]:
        table.add_row(run.name, run.state, *(_cell(run.params.get(k)) for k in params), f"{run.objective:.4g}",
                      f"{run.wall_time_s:.0f} s" if run.wall_time_s is not None else "")
    console = Console()
    console.print(table)
    saved = pruning_savings(runs)
    if saved is not None:
        print(saved)
    for run in runs:
        if run.state == "FAIL" and run.error:
            console.print(f"{run.name} failed: {run.error}", markup=False, highlight=False)
    print(f"report: {csv_path} and {png_path}")
    best = best_run(runs, direction)
    if best is None:
        print(f"no finished run has {metric}")
        return
    print(f"best: {best.name}, {metric} = {best.objective:.4g} ({best.log_dir})")
    if best.command:
        print("  " + shlex.join(best.command))


def pruning_savings(runs: list[Run]) -> str | None:
    """What pruning saved, as a sentence: the pruned trials' wall time against what they would have taken at the
    mean of the trials that ran to the end. None without both pruned and complete trials that recorded a time."""
    complete = [run.wall_time_s for run in runs if run.state == "COMPLETE" and run.wall_time_s is not None]
    pruned = [run for run in runs if run.state == "PRUNED" and run.wall_time_s is not None]
    if not complete or not pruned:
        return None
    full = sum(complete) / len(complete)
    spent = sum(run.wall_time_s for run in pruned)
    saved = max(0.0, full * len(pruned) - spent)
    total = sum(run.wall_time_s for run in runs if run.wall_time_s is not None)
    steps = ", ".join(str(run.step) for run in sorted(pruned, key=lambda run: run.number) if run.step is not None)
    return (f"pruning: {len(pruned)} of {len(runs)} trials stopped early" + (f" (at steps {steps})" if steps else "")
            + f"; they took {spent:.0f} s where running them to the end would have taken about {full * len(pruned):.0f} s"
            f" (a complete trial's mean, {full:.0f} s): saved {saved:.0f} s of trial time, "
            f"{100 * saved / (total + saved):.0f}% of the {total + saved:.0f} s the sweep would have taken unpruned")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _natural(text: str) -> list:
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
