"""`gram sweep`: a hyperparameter sweep on Optuna, each trial an ordinary `gram fit` process.

    gram sweep --config experiments/nqueens8_cpu.yaml --sweep experiments/sweeps/nqueens8_kl.yaml \
        [--workers N] [--storage URL] [--n_trials K] [any `gram fit` argument, given to every trial]
    gram sweep --report logs/nqueens8_kl        # trials.csv, trials.png and the best trial's command

The sweep file (gram_lightning/sweep_spec.py) names the study, the metric and its direction, the search space, the
sampler, the trials' budget and the pruner. The study lives in an RDB storage, by default
sqlite:///<save_dir>/<name>/study.db beside the trials' folders <save_dir>/<name>/trial_<number>, so the same
command resumes a stopped sweep: finished trials are kept, and a trial left running by a worker that died (on
this machine, or silent for GRACE_S on any machine) is marked failed and run again, from its last checkpoint.
Workers share the study: `--workers N` runs N trials at a time, and the same command started on other machines
against one PostgreSQL / MySQL `--storage` adds theirs.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import yaml

from callbacks.optuna_pruning import FINAL_METRICS, FINAL_STEP, PRUNED_AT_STEP, engine_kwargs
from gram_lightning.errors import GramError, GramUserError
from gram_lightning.sweep_spec import Param, SweepSpec, cli_value, load_sweep, make_pruner

PRUNING_CALLBACK = "callbacks.optuna_pruning.OptunaPruning"
HEARTBEAT_S = 30  # how often a worker marks its running trial alive in the storage
GRACE_S = 120  # a running trial unmarked for this long belongs to a dead worker (any machine)
STOP_S = 60  # how long a trial may take to stop on SIGTERM before it is killed

# A trial's user attributes written by the sweep (the pruning callback writes its own, callbacks/optuna_pruning.py).
WORKER = "worker"  # {host, pid, id} of the worker running it: a dead one's trial is run again
LOG_DIR, COMMAND, ERROR = "log_dir", "command", "error"
WALL_TIME, RESUMED_FROM = "wall_time_s", "resumed_from"
STOPPED = "stopped"  # a study attribute: why the sweep stopped, read by every worker before it starts a trial


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (`gram: sweep: ...`, status 1)."""

    def error(self, message: str) -> None:
        raise GramUserError(f"sweep: {message} (see gram sweep --help)")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="gram sweep", allow_abbrev=False,
        description="Run a hyperparameter sweep on Optuna (each trial a `gram fit` process), or report one. "
                    "Arguments it does not know go to every trial's `gram fit`.")
    parser.add_argument("--config", action="append", default=[], metavar="YAML",
                        help="a `gram fit` config of every trial (repeat for an overlay)")
    parser.add_argument("--sweep", metavar="YAML", help="the sweep file (experiments/sweeps/*.yaml)")
    parser.add_argument("--workers", type=int, default=1, help="trials run at a time by this command (default 1)")
    parser.add_argument("--storage", metavar="URL",
                        help="the study's RDB storage (default sqlite:///<save_dir>/<name>/study.db); a shared "
                             "postgresql+psycopg2:// or mysql+pymysql:// URL lets workers on several machines join one study")
    parser.add_argument("--n_trials", type=int, help="trials in the study (replaces the sweep file's)")
    parser.add_argument("--report", metavar="FOLDER",
                        help="write trials.csv and trials.png for a sweep's folder (or its sweep file), or for any "
                             "folder of finished runs, and print the best run's command")
    parser.add_argument("--metric", help="with --report: the objective (default: the sweep's, else val/exact_acc)")
    parser.add_argument("--direction", choices=("maximize", "minimize"), help="with --report: the objective's "
                        "direction (default: the sweep's, else maximize)")
    return parser


def main(args: list[str] | None = None) -> None:
    """`gram sweep ARGS`. Known errors end it with one line `gram: <message>` and status 1 (GRAM_DEBUG=1 shows the
    traceback)."""
    args = sys.argv[1:] if args is None else list(args)
    try:
        options, fit_args = build_parser().parse_known_args(args)
        require_optuna()
        if options.report:
            from gram_lightning.sweep_report import report

            report(options.report, storage=options.storage, metric=options.metric, direction=options.direction)
        else:
            run_sweep(options, fit_args)
    except GramError as error:
        if os.environ.get("GRAM_DEBUG", "") not in ("", "0"):
            raise
        sys.exit(f"gram: {error}")


def require_optuna() -> None:
    try:
        import optuna
    except ImportError:
        raise GramUserError('gram sweep needs Optuna: pip install -e ".[sweep]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # The sweep keeps its trials' heartbeats itself (Sweep._run_process).
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def run_sweep(options: argparse.Namespace, fit_args: list[str]) -> None:
    """Check the sweep against `gram fit`'s parser, open (or resume) its study and run its trials."""
    if not options.sweep:
        raise GramUserError("sweep: --sweep <file> is required (or --report <folder>)")
    if not options.config:
        raise GramUserError("sweep: --config <file> is required: the `gram fit` config of every trial")
    if options.workers < 1:
        raise GramUserError(f"sweep: --workers must be at least 1, not {options.workers}")
    spec = load_sweep(options.sweep, n_trials=options.n_trials)
    refuse_owned_keys(spec, fit_args)
    configs = [arg for path in options.config for arg in ("--config", path)]
    probe = TrialCommand(spec, configs, fit_args, storage_url="sqlite:///study.db", save_dir=Path("."))
    save_dir = check_with_fit_parser(spec, probe)
    storage_url = options.storage or f"sqlite:///{(save_dir / spec.name / 'study.db').resolve()}"
    if storage_url.startswith("sqlite:///"):
        Path(storage_url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    lock_path = sqlite_lock_path(storage_url)
    with file_lock(lock_path):  # workers started together: one creates the database, the others find it
        storage, retry = open_storage(storage_url)
        study = open_study(spec, storage, storage_url)
    command = TrialCommand(spec, configs, fit_args, storage_url, save_dir)
    sweep = Sweep(spec, study, storage, retry, command, lock_path=lock_path)
    sweep.run(options.workers)

    from gram_lightning.sweep_report import report

    report(str(save_dir / spec.name), storage=storage_url, metric=spec.metric, direction=spec.direction)
    if sweep.error:
        raise GramUserError(sweep.error)


def refuse_owned_keys(spec: SweepSpec, fit_args: list[str]) -> None:
    """A `gram fit` argument that sets what the sweep sets per trial would be silently replaced: refuse it."""
    owned = {p.key: f"swept by {spec.path}" for p in spec.params}
    owned.update({k: "set per trial by gram sweep" for k in ("trainer.logger.init_args.name",
                                                              "trainer.logger.init_args.version", "ckpt_path")})
    for arg in fit_args:
        key = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if key in owned:
            raise GramUserError(f"sweep: --{key} is {owned[key]}; leave it out of the command line")
        if key in ("print_config", "help"):
            raise GramUserError(f"sweep: --{key} is not a training argument; try gram fit --config ... --{key}")


class TrialCommand:
    """The `gram fit` command line of a trial: configs, budget, the user's arguments, the trial's values, its log
    folder and the pruning callback."""

    def __init__(self, spec: SweepSpec, configs: list[str], fit_args: list[str], storage_url: str, save_dir: Path):
        self.spec, self.configs, self.fit_args = spec, configs, fit_args
        self.storage_url, self.save_dir = storage_url, save_dir

    def common(self, values: list[tuple[Param, object]]) -> list[str]:
        """What a person types to train the trial's model again (in a new version folder)."""
        swept = [arg for param, value in values for arg in (f"--{param.key}", cli_value(value))]
        return ["fit", *self.configs, *self.spec.budget_args(), *self.fit_args, *swept,
                "--trainer.logger.init_args.name", self.spec.name]

    def full(self, values: list[tuple[Param, object]], number: int, resume: Path | None = None) -> list[str]:
        """The trial's whole command: its own version folder, the pruning callback, a checkpoint to resume."""
        callback = "--trainer.callbacks.init_args"
        args = [*self.common(values), "--trainer.logger.init_args.version", self.version(number),
                f"--trainer.callbacks+={PRUNING_CALLBACK}", f"{callback}.storage={self.storage_url}",
                f"{callback}.study_name={self.spec.name}", f"{callback}.trial_number={number}",
                f"{callback}.monitor={self.spec.metric}"]
        return args + (["--ckpt_path", str(resume)] if resume else [])

    @staticmethod
    def version(number: int) -> str:
        return f"trial_{number}"

    def log_dir(self, number: int) -> Path:
        return self.save_dir / self.spec.name / self.version(number)


# ---- checking the sweep against `gram fit` before any trial ----


def check_with_fit_parser(spec: SweepSpec, command: TrialCommand) -> Path:
    """Parse trial commands with `gram fit --print_config` (the real parser, no training): the configs and
    arguments alone, then every listed value and range end. A key or value it rejects raises GramUserError naming
    it. Returns the logger's save_dir, the root of the sweep's folder."""
    base = command.full([], number=0)
    ok, result = print_config(base)
    if not ok:
        given = shlex.join([*command.configs, *spec.budget_args(), *command.fit_args])
        raise GramUserError(f"gram fit rejects the sweep's arguments ({given}): {result}")
    examples = [(p, p.examples()) for p in spec.params]
    for i in range(max(len(values) for _, values in examples)):
        chosen = [(p, values[i % len(values)]) for p, values in examples]
        ok, combined = print_config(command.full(chosen, number=0))
        if ok:
            continue
        for param, value in chosen:  # which one: each alone
            ok, message = print_config(command.full([(param, value)], number=0))
            if not ok:
                raise GramUserError(f"sweep file {spec.path}: gram fit rejects {param.key} = {cli_value(value)}: "
                                    f"{message}")
        raise GramUserError(f"sweep file {spec.path}: gram fit rejects the combination "
                            f"{', '.join(f'{p.key} = {cli_value(v)}' for p, v in chosen)}: {combined}")
    logger = (result.get("trainer") or {}).get("logger")
    if not isinstance(logger, dict) or not isinstance(logger.get("init_args"), dict):
        raise GramUserError("gram sweep needs the TensorBoard (or another) logger of trainer.logger: it gives each "
                            "trial its folder")
    return Path(logger["init_args"].get("save_dir") or "lightning_logs")


def print_config(fit_args: list[str]) -> tuple[bool, dict | str]:
    """`gram <fit_args> --print_config` in this process: (True, the resolved config) or (False, the parser's
    complaint in one line)."""
    from gram_lightning.cli import main as gram_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            gram_main([*fit_args, "--print_config"])
            code = 0
        except SystemExit as exit_:
            code = exit_.code
    if code in (0, None):
        return True, yaml.safe_load(out.getvalue()) or {}
    if isinstance(code, str):  # a `gram: ...` line of the CLI itself
        return False, code.removeprefix("gram: ")
    return False, parser_complaint(err.getvalue())


# Lines of jsonargparse's nested error report that say where, not what.
_WHERE_LINES = ("Parser key", "Does not validate against", "Subtypes:", "Errors:", "Given value",
                "Expected a <class 'NoneType'>", "Problem with given class_path", "tip:")


def parser_complaint(stderr: str) -> str:
    """The line of jsonargparse's error report that says what is wrong."""
    text = stderr.split("error:", 1)[1] if "error:" in stderr else stderr
    lines = [line.strip().lstrip("- ").strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_WHERE_LINES)]
    return (useful or lines or ["rejected"])[-1]


# ---- the study ----


def open_storage(url: str):
    """The RDB storage at `url` with heartbeats on, and the callback that re-queues a dead worker's trial."""
    import optuna

    # Optuna 4.9 renamed the callback and its argument; older 4.x have only the first names.
    retry_cls = (getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
                 or optuna.storages.RetryFailedTrialCallback)
    retry = retry_cls(max_retry=None)
    parameters = inspect.signature(optuna.storages.RDBStorage).parameters
    stale_kw = next(k for k in ("heartbeat_stale_trial_callback", "failed_trial_callback") if k in parameters)
    for attempt in range(3):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url), grace_period=GRACE_S,
                                                 heartbeat_interval=HEARTBEAT_S, **{stale_kw: retry})
            return storage, retry
        except Exception as error:  # a bad URL, a missing driver, an unreachable server, or a worker on another
            first_line = (str(error).splitlines() or [""])[0]  # machine creating the same new database just now
            if attempt == 2 or "IntegrityError" not in type(error).__name__ + first_line:
                raise GramUserError(f"cannot open the study storage {url}: {type(error).__name__}: "
                                    f"{first_line}") from None
            time.sleep(1.0 + attempt)


def open_study(spec: SweepSpec, storage, storage_url: str):
    """The sweep's study, created or resumed; a stored study measured under another definition is refused."""
    import optuna

    study = optuna.create_study(study_name=spec.name, storage=storage, sampler=spec.build_sampler(),
                                pruner=make_pruner(spec.pruner), direction=spec.direction, load_if_exists=True)
    if study.direction.name.lower() != spec.direction:
        raise GramUserError(f"study {spec.name} in {storage_url} is a {study.direction.name.lower()} study; "
                            f"{spec.path} asks to {spec.direction}")
    stored = study.user_attrs.get("sweep") or {}
    measured = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                        optuna.trial.TrialState.PRUNED))
    changed = [k for k, v in spec.definition().items() if k in stored and stored[k] != v]
    if measured and changed:
        raise GramUserError(f"study {spec.name} in {storage_url} has trials measured with another {', '.join(changed)}"
                            f" than {spec.path} gives; name the sweep differently or remove the study")
    study.set_user_attr("sweep", {**spec.definition(), "budget": spec.budget, "pruner": spec.pruner,
                                  "sampler": spec.sampler})
    study.set_user_attr(STOPPED, None)
    return study


def sqlite_lock_path(url: str) -> Path | None:
    """A file lock beside an SQLite study: SQLite gives no row locks, so two workers could take one waiting trial."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(url[len("sqlite:///"):] + ".lock")


@contextlib.contextmanager
def file_lock(path: Path | None):
    """Hold an exclusive lock on the file at `path` (none when None); one open file each, so it also excludes
    threads of this process."""
    if path is None:
        yield
        return
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def trials_used(trials) -> int:
    """Trials that count against n_trials: all but those waiting and the dead workers' ones re-queued as new."""
    from optuna.trial import TrialState

    requeued = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(1 for t in trials
               if t.state != TrialState.WAITING and not (t.state == TrialState.FAIL and t.number in requeued))


# ---- running trials ----


# A trial's process: it dies with the worker thread that started it (Linux's parent-death signal), so a SIGKILL of
# `gram sweep` leaves no trial training for nobody, then runs `gram <args>`. Armed in the child itself: a
# preexec_fn is unsafe in a process with threads.
TRIAL_MAIN = """
import ctypes, os, signal, sys
parent = int(sys.argv[1])
if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
sys.argv = ["gram", *sys.argv[2:]]
from gram_lightning.cli import main
main()
"""


def trial_environment(workers: int) -> dict[str, str]:
    """A trial's environment: this one's, with the CPU cores shared out among the workers (OMP_NUM_THREADS, which
    torch reads for its thread pool) unless it is set already, since N trials each using every core run slower
    together than N trials on their own share."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    return env


class Sweep:
    """The trials of one `gram sweep` command: `workers` threads, each claiming a trial from the study, running its
    `gram fit` process and telling the study how it ended."""

    def __init__(self, spec: SweepSpec, study, storage, retry, command: TrialCommand, lock_path: Path | None):
        self.spec, self.study, self.storage, self.retry, self.command = spec, study, storage, retry, command
        self.lock_path = lock_path
        self.host, self.worker_id = socket.gethostname(), uuid.uuid4().hex
        self.stop = threading.Event()
        self.error: str | None = None  # why the sweep stopped early
        self.failure: BaseException | None = None  # a bug in a worker thread, raised again by run()
        self._lock = threading.Lock()
        self._claim_mutex = threading.Lock()
        self.workers = 1  # trials run at a time by this command
        self._active = 0  # worker threads still running
        self._all_done = threading.Event()
        self._running: dict[int, subprocess.Popen] = {}

    # -- the workers --

    def run(self, workers: int) -> None:
        """Run trials until the study has n_trials; Ctrl-C or SIGTERM stops the running ones, which the next start
        runs again from their last checkpoint."""
        self._active = self.workers = workers
        threads = [threading.Thread(target=self._work, name=f"sweep-worker-{i}", daemon=True) for i in range(workers)]
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt) if _main_thread() else None
        try:
            for thread in threads:
                thread.start()
            # Waiting on an event, not in Thread.join: an interrupted join can leave a live thread marked finished.
            while not self._all_done.wait(timeout=0.5):
                pass
        except KeyboardInterrupt:
            self.halt(None)
            self._all_done.wait()
            self._say("sweep interrupted; the same command resumes it")
            raise SystemExit(130) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if self.failure is not None:
            raise self.failure

    def _work(self) -> None:
        try:
            while (claimed := self.claim()) is not None:
                self.run_trial(*claimed)
        except BaseException as error:  # a bug: stop the other workers and show it from the main thread
            self.failure = error
            self.halt(None)
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._all_done.set()

    def halt(self, message: str | None) -> None:
        """Stop the sweep: no new trials, running ones terminated (and re-queued). `message` says why (None for
        an interruption by the user)."""
        with self._lock:
            if message is not None and self.error is None:
                self.error = message
                with contextlib.suppress(Exception):
                    self.study.set_user_attr(STOPPED, message)
            self.stop.set()
            running = list(self._running.values())
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()

    @contextlib.contextmanager
    def _claim_lock(self):
        """One claim at a time: among this command's workers, and on SQLite among all commands of this machine."""
        with self._claim_mutex, file_lock(self.lock_path):
            yield

    def claim(self):
        """The next trial for this worker with its parameter values, or None when the study has its n_trials or
        the sweep stops."""
        from optuna.trial import TrialState

        with self._claim_lock():
            if self.stop.is_set():
                return None
            stopped = self.study.user_attrs.get(STOPPED)
            if stopped:  # another worker of this study found a reason to stop
                self.error = self.error or stopped
                return None
            self.fail_dead_trials()
            trials = self.study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if not waiting and trials_used(trials) >= self.spec.n_trials:
                return None
            trial = self.study.ask()
            values = [(p, p.suggest(trial)) for p in self.spec.params]
            trial.set_user_attr(WORKER, {"host": self.host, "pid": os.getpid(), "id": self.worker_id})
            self.storage.record_heartbeat(trial._trial_id)
            return trial, values

    def fail_dead_trials(self) -> None:
        """Mark failed, and re-queue as new trials, the running trials whose worker is gone: silent for GRACE_S
        (Optuna's heartbeat, any machine), or a process of this machine that no longer exists."""
        import optuna
        from optuna.trial import TrialState

        optuna.storages.fail_stale_trials(self.study)
        now = time.time()
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get(WORKER)
            if worker is None:
                started = trial.datetime_start.timestamp() if trial.datetime_start else now
                dead = now - started > GRACE_S
            else:
                dead = worker.get("host") == self.host and not self._alive(worker)
            if not dead:
                continue
            try:
                if not self.storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            self.retry(self.study, self.storage.get_trial(trial._trial_id))
            self._say(f"trial {trial.number} was left running by a worker that stopped; it runs again as a new trial")

    def _alive(self, worker: dict) -> bool:
        if worker.get("id") == self.worker_id:
            return True
        if worker.get("pid") == os.getpid():  # the pid of a worker that died, now this process's
            return False
        try:
            os.kill(int(worker["pid"]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, KeyError, TypeError, ValueError):
            return True
        return True

    # -- one trial --

    def run_trial(self, trial, values: list[tuple[Param, object]]) -> None:
        """Run the trial's `gram fit` and tell the study how it ended."""
        from optuna.exceptions import UpdateFinishedTrialError

        number = trial.number
        log_dir = self.command.log_dir(number)
        resume = self._checkpoint_to_resume(trial)
        args = self.command.full(values, number, resume)
        for key, value in ((LOG_DIR, str(log_dir)), (COMMAND, ["gram", *self.command.common(values)]),
                           (RESUMED_FROM, str(resume) if resume else None), (ERROR, None),
                           (PRUNED_AT_STEP, None), (FINAL_METRICS, None), (FINAL_STEP, None)):
            trial.set_user_attr(key, value)
        shown = ", ".join(f"{p.key}={cli_value(v)}" for p, v in values)
        self._say(f"trial {number} started: {shown}" + (f" (resumed from {resume})" if resume else ""))
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / "fit.log"
        start = time.time()
        returncode = self._run_process(trial, args, log_path)
        try:
            self._finish(trial, returncode, time.time() - start, log_path)
        except UpdateFinishedTrialError:  # failed meanwhile by a worker that took this one for dead
            self._say(f"trial {number} was marked failed by another worker while it ran; its result is dropped")

    def _finish(self, trial, returncode: int, wall_time: float, log_path: Path) -> None:
        """Tell the study how the trial's process ended: finished, pruned, crashed or stopped by the sweep."""
        from optuna.trial import TrialState

        number = trial.number
        trial.set_user_attr(WALL_TIME, wall_time)
        attrs = self.storage.get_trial_user_attrs(trial._trial_id)
        metrics = attrs.get(FINAL_METRICS)
        if self.stop.is_set() and metrics is None:  # Lightning ends a run it was told to stop with status 0 or 1
            self._requeue(trial, "stopped with the sweep")
            return
        if returncode != 0:
            error = crash_reason(log_path) or f"exit status {returncode}"
            trial.set_user_attr(ERROR, error)
            self.study.tell(trial, state=TrialState.FAIL)
            self._say(f"trial {number} failed (exit status {returncode}): {error}; log: {log_path}")
        elif attrs.get(PRUNED_AT_STEP) is not None:
            self.study.tell(trial, state=TrialState.PRUNED)
            self._say(f"trial {number} pruned at step {attrs[PRUNED_AT_STEP]}")
        elif metrics is None:  # the run could not reach the study
            error = "the run ended without reporting its metrics to the study"
            trial.set_user_attr(ERROR, error)
            self.study.tell(trial, state=TrialState.FAIL)
            self._say(f"trial {number} failed: {error}; log: {log_path}")
        elif self.spec.metric not in metrics:
            message = missing_metric_message(self.spec, number, metrics, log_path)
            trial.set_user_attr(ERROR, message)
            self.study.tell(trial, state=TrialState.FAIL)
            self.halt(message)
        else:
            self.study.tell(trial, metrics[self.spec.metric])
            self._say(f"trial {number} finished: {self.spec.metric} = {metrics[self.spec.metric]:.4g} "
                      f"({wall_time:.0f} s, {log_path.parent})")

    def _checkpoint_to_resume(self, trial) -> Path | None:
        """A re-queued trial goes on from the last checkpoint of the attempt its worker left."""
        frozen = self.storage.get_trial(trial._trial_id)
        previous = frozen.user_attrs.get(LOG_DIR) if frozen.system_attrs.get("retry_history") else None
        checkpoint = Path(previous) / "checkpoints" / "last.ckpt" if previous else None
        return checkpoint if checkpoint is not None and checkpoint.is_file() else None

    def _run_process(self, trial, args: list[str], log_path: Path) -> int:
        """Run `gram <args>` with its output in `log_path`, keeping the trial's heartbeat; its exit status."""
        with open(log_path, "w") as log:
            with self._lock:
                if self.stop.is_set():
                    return -int(signal.SIGTERM)
                # Its own session: a Ctrl-C at the terminal reaches the sweep alone, which stops and re-queues it.
                process = subprocess.Popen([sys.executable, "-c", TRIAL_MAIN, str(os.getpid()), *args],
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True, env=trial_environment(self.workers))
                self._running[trial.number] = process
            try:
                while True:
                    timeout = STOP_S if self.stop.is_set() else HEARTBEAT_S
                    try:
                        return process.wait(timeout=timeout)
                    except subprocess.TimeoutExpired:
                        if self.stop.is_set():
                            process.kill()
                        with contextlib.suppress(Exception):  # a busy database: the next beat will do
                            self.storage.record_heartbeat(trial._trial_id)
            finally:
                with self._lock:
                    self._running.pop(trial.number, None)

    def _requeue(self, trial, reason: str) -> None:
        from optuna.trial import TrialState

        trial.set_user_attr(ERROR, reason)
        if self.storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
            self.retry(self.study, self.storage.get_trial(trial._trial_id))
        self._say(f"trial {trial.number} {reason}; it runs again when the sweep resumes")

    def _say(self, line: str) -> None:
        with self._lock:
            print(f"sweep {self.spec.name}: {line}", flush=True)


def missing_metric_message(spec: SweepSpec, number: int, metrics: dict, log_path: Path) -> str:
    """Why a trial that finished has no objective: the metric is misspelt, or no validation ran."""
    if not metrics:
        return f"trial {number} finished without logging any metric; log: {log_path}"
    prefix = spec.metric.split("/", 1)[0] + "/"
    related = sorted(k for k in metrics if k.startswith(prefix)) or sorted(metrics)
    hint = ""
    if spec.metric.startswith("val/") and not related[0].startswith("val/"):
        hint = " (no validation ran: give the trials max_steps of at least trainer.val_check_interval)"
    return (f"trial {number} finished without logging {spec.metric}, the metric of {spec.path}{hint}; it logged "
            f"{', '.join(related[:12])}{', ...' if len(related) > 12 else ''}")


def crash_reason(log_path: Path) -> str:
    """Why a trial's process failed, in one line: its last `gram: ...` message, else the exception that ended it (the
    line of a nested report that says what is wrong), else its last line of output."""
    try:
        lines = [line.rstrip() for line in log_path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    gram_lines = [line for line in lines if line.startswith("gram: ")]
    if gram_lines:
        return gram_lines[-1][:300]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if not starts:
        return next((line.strip() for line in reversed(lines) if line.strip()), "")[:300]
    block = lines[starts[-1] + 1:]
    first = next((i for i, line in enumerate(block) if line and not line.startswith(" ")), len(block))
    exception = [line.strip() for line in block[first:] if line.strip()] or ["(no message)"]
    kind, _, message = exception[0].partition(": ")
    details = [line.lstrip("- ").strip() for line in [message, *exception[1:]]]
    useful = [line for line in details if line and not line.startswith(_WHERE_LINES)]
    return f"{kind}: {useful[0] if useful else message}"[:300]


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    main()
