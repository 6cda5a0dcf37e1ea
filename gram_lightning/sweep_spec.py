"""A sweep file (YAML): what `gram sweep` searches, how, and for how long; turned into Optuna's sampler, pruner and
parameter suggestions.

    name: nqueens8_kl                # the study and its folder logs/<name>/trial_<number> (default: the file's stem)
    metric: val/exact_acc            # a metric the runs log; its last value is the trial's objective
    direction: maximize              # or minimize
    n_trials: 16                     # trials in the study, all workers and restarts together (grid: the grid's size)
    sampler: tpe                     # tpe (default), random or grid; or {type: tpe, n_startup_trials: 4, ...}
    seed: 0                          # the sampler's seed
    budget: {max_steps: 1500, max_time: "00:00:10:00"}   # each trial's --trainer.max_steps / max_time (null: none)
    pruner: median                   # median (default), hyperband or none; or {type: median, n_warmup_steps: 500}
    params:                          # any `gram fit` key, without the leading dashes
      model.beta: {low: 0.03, high: 3.0, log: true}      # a float range (log scale)
      model.net.init_args.T: {low: 1, high: 4}           # an int range (integer bounds); `step` for a coarser one
      model.kl_reduction: [mean, sum]                    # listed values
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gram_lightning.errors import GramUserError

TOP_LEVEL_KEYS = ("name", "metric", "direction", "n_trials", "sampler", "seed", "budget", "pruner", "params")
BUDGET_KEYS = ("max_steps", "max_time")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
DIRECTIONS = ("maximize", "minimize")
RANGE_KEYS = ("type", "low", "high", "log", "step")


@dataclass(frozen=True)
class Param:
    """One swept `gram fit` key: listed values (`choices`) or an int / float range."""

    key: str
    kind: str  # "categorical", "int" or "float"
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    def suggest(self, trial) -> Any:
        """This parameter's value for an Optuna trial (a trial that already holds one, a retried trial, keeps it)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def examples(self) -> list:
        """The values whose acceptance by `gram fit` stands for the whole parameter: every listed value, or the
        range's ends."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def describe(self) -> dict:
        """A JSON-able form, compared when a stored study resumes."""
        if self.kind == "categorical":
            return {"values": list(self.choices)}
        return {"type": self.kind, "low": self.low, "high": self.high, "log": self.log, "step": self.step}


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, checked sweep file."""

    path: Path
    name: str
    metric: str
    direction: str
    params: tuple[Param, ...]
    n_trials: int
    sampler: str = "tpe"
    sampler_args: dict = field(default_factory=dict)
    seed: int | None = None
    budget: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=lambda: {"type": "median"})

    def budget_args(self) -> list[str]:
        """The per-trial budget as `gram fit` arguments."""
        args = []
        for key in BUDGET_KEYS:
            if key in self.budget:
                args += [f"--trainer.{key}", cli_value(self.budget[key])]
        return args

    def definition(self) -> dict:
        """What a study's finished trials were measured under: a study resumes only with the same definition."""
        return {"metric": self.metric, "direction": self.direction,
                "params": {p.key: p.describe() for p in self.params}}

    def build_sampler(self):
        """The Optuna sampler the file names."""
        import optuna

        if self.sampler == "grid":
            space = {p.key: list(p.choices) for p in self.params}
            return _sweep_grid_sampler()(space, seed=self.seed)
        kwargs = dict(self.sampler_args)
        if self.sampler == "tpe":
            # Workers that ask while others' trials run should not all sample the same point.
            kwargs.setdefault("constant_liar", True)
            cls = optuna.samplers.TPESampler
        else:
            cls = optuna.samplers.RandomSampler
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return cls(seed=self.seed, **kwargs)
            except TypeError as error:
                raise GramUserError(f"sweep file {self.path}: sampler {self.sampler}: {error}") from None


def _sweep_grid_sampler():
    """Optuna's GridSampler for trials told outside `Study.optimize`: `gram sweep` counts trials itself, and the
    sampler's own stop at the grid's end works only inside `optimize`."""
    import optuna

    class SweepGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study, trial, state, values) -> None:
            pass

    return SweepGridSampler


def make_pruner(spec: dict):
    """The Optuna pruner of a sweep's `pruner` entry: {"type": median | hyperband | none, **its arguments}."""
    import optuna

    kwargs = {k: v for k, v in spec.items() if k != "type"}
    cls = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
           "none": optuna.pruners.NopPruner}[spec["type"]]
    return cls(**kwargs)


def cli_value(value: Any) -> str:
    """`value` as a `gram fit` command-line value: booleans and None in YAML spelling, numbers exact."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def load_sweep(path: str | Path, n_trials: int | None = None) -> SweepSpec:
    """The sweep file at `path`, checked; `n_trials` replaces the file's. Any mistake raises GramUserError naming
    the file and the entry."""
    path = Path(path)
    if not path.is_file():
        raise GramUserError(f"sweep file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise GramUserError(f"sweep file {path} is not valid YAML: {' '.join(str(error).split())}") from None
    where = f"sweep file {path}"
    if not isinstance(raw, dict):
        raise GramUserError(f"{where}: expected a mapping of {', '.join(TOP_LEVEL_KEYS)}")
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise GramUserError(f"{where}: unknown entr{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)} "
                            f"(known: {', '.join(TOP_LEVEL_KEYS)})")
    metric = raw.get("metric")
    if not isinstance(metric, str) or not metric:
        raise GramUserError(f"{where}: 'metric' must name a logged metric, e.g. val/exact_acc")
    direction = raw.get("direction", "maximize")
    if direction not in DIRECTIONS:
        raise GramUserError(f"{where}: 'direction' must be maximize or minimize, not {direction!r}")
    sampler, sampler_args = _named_entry(raw.get("sampler", "tpe"), SAMPLERS, "sampler", where)
    pruner_name, pruner_args = _named_entry(raw.get("pruner", "median"), PRUNERS, "pruner", where)
    pruner = {"type": pruner_name, **pruner_args}
    try:
        make_pruner(pruner)
    except (TypeError, ValueError) as error:
        raise GramUserError(f"{where}: pruner {pruner_name}: {error}") from None
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise GramUserError(f"{where}: 'seed' must be an integer")
    budget = _budget(raw.get("budget") or {}, where)
    params = _params(raw.get("params"), where, grid=sampler == "grid")
    if sampler == "grid" and sampler_args:
        raise GramUserError(f"{where}: the grid sampler takes no arguments (got {', '.join(sampler_args)})")
    grid_size = _grid_size(params) if sampler == "grid" else None
    n_trials = raw.get("n_trials", grid_size) if n_trials is None else n_trials
    if n_trials is None:
        raise GramUserError(f"{where}: 'n_trials' is needed with the {sampler} sampler")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise GramUserError(f"{where}: 'n_trials' must be a positive integer, not {n_trials!r}")
    if grid_size is not None:
        n_trials = min(n_trials, grid_size)  # every point once
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise GramUserError(f"{where}: 'name' must be a plain folder name, not {name!r}")
    return SweepSpec(path=path, name=name, metric=metric, direction=direction, params=params, n_trials=n_trials,
                     sampler=sampler, sampler_args=sampler_args, seed=seed, budget=budget, pruner=pruner)


def _named_entry(entry: Any, names: tuple[str, ...], what: str, where: str) -> tuple[str, dict]:
    """A `sampler` / `pruner` entry, a name or {type: name, **arguments}, as (name, arguments)."""
    if isinstance(entry, str):
        name, kwargs = entry, {}
    elif isinstance(entry, dict) and isinstance(entry.get("type"), str):
        name, kwargs = entry["type"], {k: v for k, v in entry.items() if k != "type"}
    else:
        raise GramUserError(f"{where}: '{what}' must be one of {', '.join(names)} or a mapping with a 'type'")
    if name not in names:
        raise GramUserError(f"{where}: unknown {what} {name!r} (known: {', '.join(names)})")
    return name, kwargs


def _budget(budget: Any, where: str) -> dict:
    if not isinstance(budget, dict) or set(budget) - set(BUDGET_KEYS):
        raise GramUserError(f"{where}: 'budget' takes max_steps and/or max_time (e.g. \"00:00:10:00\")")
    steps = budget.get("max_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise GramUserError(f"{where}: budget max_steps must be a positive integer, not {steps!r}")
    return dict(budget)  # a null max_time lifts the config's


def _params(entries: Any, where: str, grid: bool) -> tuple[Param, ...]:
    if not isinstance(entries, dict) or not entries:
        raise GramUserError(f"{where}: 'params' must map at least one `gram fit` key to its values or range")
    params = []
    for raw_key, entry in entries.items():
        key = str(raw_key).lstrip("-")
        if not key or " " in key:
            raise GramUserError(f"{where}: {raw_key!r} is not a `gram fit` key")
        params.append(_param(key, entry, f"{where}: params {key}", grid))
    return tuple(params)


def _param(key: str, entry: Any, where: str, grid: bool) -> Param:
    if isinstance(entry, dict) and "values" in entry:
        entry = entry["values"]
    if isinstance(entry, list):
        if not entry:
            raise GramUserError(f"{where}: the list of values is empty")
        if any(isinstance(v, (list, dict)) for v in entry):
            raise GramUserError(f"{where}: each value must be a single number, string, boolean or null")
        if len(set(map(json.dumps, entry))) != len(entry):
            raise GramUserError(f"{where}: a value is listed twice")
        return Param(key, "categorical", choices=tuple(entry))
    if not isinstance(entry, dict):
        raise GramUserError(f"{where}: give a list of values or a range {{low: .., high: ..}}, not {entry!r}")
    unknown = sorted(set(entry) - set(RANGE_KEYS))
    if unknown or "low" not in entry or "high" not in entry:
        raise GramUserError(f"{where}: a range takes low, high and optionally log, step, type (int or float)"
                            + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    low, high, log, step = entry["low"], entry["high"], bool(entry.get("log", False)), entry.get("step")
    for name, value in (("low", low), ("high", high), ("step", step)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise GramUserError(f"{where}: {name} must be a number, not {value!r}")
    kind = entry.get("type") or ("int" if all(isinstance(v, int) for v in (low, high, step) if v is not None)
                                 else "float")
    if kind not in ("int", "float"):
        raise GramUserError(f"{where}: a range's type is int or float, not {kind!r}")
    if low > high:
        raise GramUserError(f"{where}: the range is empty (low {low} > high {high})")
    if log and low <= 0:
        raise GramUserError(f"{where}: a log-scale range needs low > 0 (got {low})")
    if log and step is not None:
        raise GramUserError(f"{where}: a range is either log-scale or stepped, not both")
    if step is not None and step <= 0:
        raise GramUserError(f"{where}: step must be positive (got {step})")
    if kind == "int":
        if not all(float(v).is_integer() for v in (low, high, step) if v is not None):
            raise GramUserError(f"{where}: an int range needs integer low, high and step")
        low, high = int(low), int(high)
        step = int(step) if step is not None else None
        if grid:  # a grid lists every integer of the range
            return Param(key, "categorical", choices=tuple(range(low, high + 1, step or 1)))
    elif grid:
        raise GramUserError(f"{where}: the grid sampler needs listed values, not a float range")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def _grid_size(params: tuple[Param, ...]) -> int:
    size = 1
    for p in params:
        size *= len(p.choices)
    return size
