"""`gram sweep`: trials as `gram fit` processes on an Optuna study, resumed after a kill, shared by workers, pruned,
reported; and bad sweeps stopped with one line before any trial starts."""

import csv
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

optuna = pytest.importorskip("optuna")

from gram_lightning import sweep  # noqa: E402
from gram_lightning.sweep_spec import load_sweep  # noqa: E402
from test_cli import ROOT  # noqa: E402


def tiny_config(tmp_path: Path, max_steps: int = 4) -> Path:
    """The demo config shrunk to a few seconds a run (test_cli's tiny settings), without the demo's end-of-run width
    report, logging under tmp_path/logs."""
    config = yaml.safe_load((ROOT / "experiments" / "demo.yaml").read_text())
    del config["trainer"]["callbacks+"]
    config["trainer"].update(max_steps=max_steps, val_check_interval=2, log_every_n_steps=1,
                             enable_progress_bar=False, enable_model_summary=False)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "logs")
    config["model"]["net"]["init_args"].update(hidden_size=16, num_heads=2, num_layers=1, N_sup=2)
    config["model"]["warmup_steps"] = 1
    config["data"]["init_args"].update(num_train_puzzles=40, num_test_puzzles=12, num_val_puzzles=8, batch_size=8,
                                       cache_dir=str(tmp_path / "cache"))
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def sweep_file(tmp_path: Path, name: str, **entries) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"metric": "val/exact_acc", "direction": "maximize", "pruner": "none", **entries}))
    return path


def sweep_command(tmp_path: Path, path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "gram_lightning.cli", "sweep", "--config", str(tiny_config(tmp_path)),
            "--sweep", str(path), *extra]


def environment() -> dict:
    return dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}")


def run_sweep(tmp_path: Path, path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(sweep_command(tmp_path, path, *extra), cwd=tmp_path, env=environment(),
                          capture_output=True, text=True, timeout=600)


def load_study(tmp_path: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'logs' / name / 'study.db'}")


def states(study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False)]


@pytest.mark.slow  # three `gram fit` trials
def test_grid_sweep_runs_every_point_once_and_writes_the_table(tmp_path):
    result = run_sweep(tmp_path, sweep_file(tmp_path, "grid", sampler="grid", params={"model.beta": [0.3, 1.0, 3.0]}))
    assert result.returncode == 0, result.stderr[-3000:]
    study = load_study(tmp_path, "grid")
    assert states(study) == ["COMPLETE"] * 3
    assert sorted(t.params["model.beta"] for t in study.trials) == [0.3, 1.0, 3.0]
    folder = tmp_path / "logs" / "grid"
    for trial in study.trials:  # an ordinary run folder: its config holds the trial's value
        saved = yaml.safe_load((folder / f"trial_{trial.number}" / "config.yaml").read_text())
        assert saved["model"]["init_args"]["beta"] == trial.params["model.beta"]
        assert (folder / f"trial_{trial.number}" / "checkpoints" / "last.ckpt").is_file()
    rows = (folder / "trials.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert len(rows) == 4 and header[:5] == ["number", "name", "state", "model.beta", "objective"]
    assert {"val/sample_acc", "wall_time_s", "log_dir"} <= set(header)
    assert (folder / "trials.png").stat().st_size > 0
    best = result.stdout.split("best: ", 1)[1].splitlines()
    assert best[1].strip().startswith(f"gram fit --config {tmp_path / 'tiny.yaml'} --model.beta ")

    # The same runs as a plain folder, no study: metrics from the event files and test_metrics.json, the settings
    # that differ from the configs.
    plain = tmp_path / "plain"
    for trial in study.trials:
        shutil.copytree(folder / f"trial_{trial.number}", plain / f"version_{trial.number}")
    (plain / "version_1" / "test_metrics.json").write_text(json.dumps({"metrics": {"test/exact_acc": 0.25}}))
    sweep.main(["--report", str(plain), "--metric", "val/token_acc"])
    with open(plain / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["name"] for row in rows] == ["version_0", "version_1", "version_2"]
    assert [float(row["model.init_args.beta"]) for row in rows] == [t.params["model.beta"] for t in study.trials]
    assert all(0 <= float(row["objective"]) <= 1 for row in rows) and rows[1]["test/exact_acc"] == "0.25"
    assert (plain / "trials.png").is_file()


def stored_study(tmp_path: Path, name: str):
    """An empty study in the sweep's default storage, and the distribution of the swept beta."""
    (tmp_path / "logs" / name).mkdir(parents=True)
    study = optuna.create_study(study_name=name, direction="maximize",
                                storage=f"sqlite:///{tmp_path / 'logs' / name / 'study.db'}")
    return study, optuna.distributions.FloatDistribution(0.5, 1.5)


@pytest.mark.slow  # several gram fit processes: tens of seconds
def test_a_trial_left_running_by_a_dead_worker_runs_again_and_finished_ones_do_not(tmp_path):
    name = "orphan"
    study, beta = stored_study(tmp_path, name)
    study.add_trial(optuna.trial.create_trial(params={"model.beta": 1.0}, distributions={"model.beta": beta},
                                              value=0.5))
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = study.ask({"model.beta": beta})  # running, its worker's process gone
    orphan.set_user_attr("worker", {"host": socket.gethostname(), "pid": gone.pid, "id": "gone"})
    path = sweep_file(tmp_path, name, sampler="random", n_trials=2, params={"model.beta": {"low": 0.5, "high": 1.5}})
    result = run_sweep(tmp_path, path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load_study(tmp_path, name).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == trials[1].params and trials[2].system_attrs["failed_trial"] == 1
    assert trials[0].value == 0.5 and "trial 0 started" not in result.stdout
    assert "trial 1 was left running by a worker that stopped" in result.stdout


@pytest.mark.slow
def test_killed_sweep_resumes_without_redoing_finished_trials(tmp_path):
    # Long enough trials (40 steps, a checkpoint every 2) for the kill to land inside trial 1's training.
    path = sweep_file(tmp_path, "killed", sampler="grid", budget={"max_steps": 40},
                      params={"model.beta": [0.5, 2.0]})
    first = subprocess.Popen(sweep_command(tmp_path, path), cwd=tmp_path, env=environment(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "logs" / "killed" / "trial_1" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not checkpoint.is_file() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    trainer_pids = children(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert checkpoint.is_file(), "the sweep ended before trial 1 saved a checkpoint"
    assert trainer_pids and wait_until(lambda: all(zombie(pid) for pid in trainer_pids), 10)  # died with the sweep
    killed = load_study(tmp_path, "killed")
    assert states(killed) == ["COMPLETE", "RUNNING"]
    finished_events = sorted((tmp_path / "logs" / "killed" / "trial_0").glob("events.*"))

    second = run_sweep(tmp_path, path)
    assert second.returncode == 0, second.stderr[-3000:]
    study = load_study(tmp_path, "killed")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]  # trial 1 failed and ran again as 2
    assert trials[2].params == trials[1].params and trials[2].system_attrs["failed_trial"] == 1
    assert trials[2].user_attrs["resumed_from"] == str(checkpoint)  # from where the killed worker left it
    assert trials[2].user_attrs["step"] == 40
    assert "trial 0 started" not in second.stdout  # the finished trial is not run again
    assert sorted((tmp_path / "logs" / "killed" / "trial_0").glob("events.*")) == finished_events


def children(pid: int) -> list[int]:
    """The child processes of `pid` (all its threads')."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children") as handle:
            found += [int(p) for p in handle.read().split()]
    return found


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(0.1)
    return True


def zombie(pid: int) -> bool:
    """Whether process `pid` has ended (gone, or a zombie its killed parent never reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.slow  # several gram fit processes: tens of seconds
def test_two_workers_on_one_sqlite_study_run_distinct_trials(tmp_path):
    path = sweep_file(tmp_path, "shared", sampler="grid", params={"model.beta": [0.3, 1.0, 3.0]})
    command = sweep_command(tmp_path, path)
    workers = [subprocess.Popen(command, cwd=tmp_path, env=environment(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-2000:] for _, err in outputs]
    study = load_study(tmp_path, "shared")
    assert states(study) == ["COMPLETE"] * 3
    assert sorted(t.params["model.beta"] for t in study.trials) == [0.3, 1.0, 3.0]
    assert len({t.user_attrs["worker"]["pid"] for t in study.trials}) == 2  # both commands ran trials
    for trial in study.trials:  # each trial trained once, into its own folder
        assert len(list((tmp_path / "logs" / "shared" / f"trial_{trial.number}").glob("events.*"))) == 1


@pytest.fixture
def postgres_url(tmp_path):
    """A PostgreSQL server of its own (the `pgserver` wheel), as a `--storage` URL through psycopg2."""
    pgserver = pytest.importorskip("pgserver")
    pytest.importorskip("psycopg2")
    server = pgserver.get_server(tmp_path / "pgdata", cleanup_mode="stop")
    yield server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1)
    server.cleanup()


@pytest.mark.slow  # a database server and four gram fit processes
def test_two_commands_share_one_study_on_a_postgresql_server(tmp_path, postgres_url):
    # The multi-machine form: every worker runs the same command against one server (here two on one host).
    path = sweep_file(tmp_path, "server", sampler="grid", params={"model.beta": [0.3, 1.0, 2.0, 3.0]})
    command = sweep_command(tmp_path, path, "--storage", postgres_url)
    workers = [subprocess.Popen(command, cwd=tmp_path, env=environment(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err[-2000:] for _, err in outputs]
    study = optuna.load_study(study_name="server", storage=postgres_url)
    assert set(states(study)) == {"COMPLETE"}
    assert {t.params["model.beta"] for t in study.trials} == {0.3, 1.0, 2.0, 3.0}  # the whole grid
    assert len({t.user_attrs["worker"]["pid"] for t in study.trials}) == 2  # both commands ran trials
    assert all(len(t.intermediate_values) >= 1 for t in study.trials)  # each trial reported to the server
    report = subprocess.run([sys.executable, "-m", "gram_lightning.cli", "sweep", "--report",
                             str(tmp_path / "logs" / "server"), "--storage", postgres_url],
                            cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "logs" / "server" / "trials.csv").open()))
    assert len(rows) == len(study.trials) and all(row["state"] == "COMPLETE" for row in rows)


@pytest.mark.slow  # several gram fit processes: tens of seconds
def test_pruning_stops_a_trial_behind_the_others(tmp_path):
    name = "pruned"
    study, beta = stored_study(tmp_path, name)
    for _ in range(2):  # two finished trials far ahead of anything a tiny run reaches (accuracy cannot pass 1)
        study.add_trial(optuna.trial.create_trial(params={"model.beta": 1.0}, distributions={"model.beta": beta},
                                                  value=2.0, intermediate_values={s: 2.0 for s in range(1, 21)}))
    path = sweep_file(tmp_path, name, sampler="random", n_trials=3, budget={"max_steps": 20},
                      pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
                      params={"model.beta": {"low": 0.5, "high": 1.5}})
    result = run_sweep(tmp_path, path)
    assert result.returncode == 0, result.stderr[-3000:]
    trial = load_study(tmp_path, name).trials[2]
    assert trial.state.name == "PRUNED" and "trial 2 pruned at step 2" in result.stdout
    assert trial.user_attrs["pruned_at_step"] == 2 and trial.user_attrs["step"] == 2  # stopped at its first report
    assert list(trial.intermediate_values) == [2]


@pytest.mark.slow  # several gram fit processes: tens of seconds
def test_a_crashing_trial_is_failed_with_its_log_and_the_sweep_goes_on(tmp_path):
    # max_sigma 0.2 is below the config's init_sigma 0.5: the parser accepts it, the network refuses it.
    path = sweep_file(tmp_path, "crash", sampler="grid", params={"model.net.init_args.max_sigma": [0.2, 1.0]})
    result = run_sweep(tmp_path, path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = {t.params["model.net.init_args.max_sigma"]: t for t in load_study(tmp_path, "crash").trials}
    assert trials[1.0].state.name == "COMPLETE" and trials[0.2].state.name == "FAIL"
    assert "init_sigma < max_sigma" in trials[0.2].user_attrs["error"]
    log = Path(trials[0.2].user_attrs["log_dir"]) / "fit.log"
    assert log.is_file() and f"log: {log}" in result.stdout


@pytest.mark.slow  # several gram fit processes: tens of seconds
def test_a_metric_never_logged_stops_the_sweep_after_the_first_trial(tmp_path):
    path = sweep_file(tmp_path, "nometric", sampler="grid", metric="val/exact_accuracy",
                      params={"model.beta": [0.5, 2.0]})
    result = run_sweep(tmp_path, path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("gram: trial 0 finished without logging val/exact_accuracy") and "val/exact_acc" in last
    assert states(load_study(tmp_path, "nometric")) == ["FAIL"]  # the second trial never started


# ---- bad input: one line, before any trial ----


def sweep_error(tmp_path: Path, path: Path, *extra: str) -> str:
    """The message `gram sweep` exits with (in this process), after checking that nothing was started."""
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(["--config", str(tiny_config(tmp_path)), "--sweep", str(path), *extra])
    assert not (tmp_path / "logs").exists()  # no study, no trial folder
    return str(exit_info.value.code)


def test_a_key_the_config_does_not_have_is_one_line_before_any_trial(tmp_path):
    path = sweep_file(tmp_path, "typo", params={"model.bta": [0.1, 1.0]}, n_trials=2)
    result = run_sweep(tmp_path, path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"gram: sweep file {path}: gram fit rejects model.bta = 0.1: Option 'bta' is not accepted"]
    assert not (tmp_path / "logs").exists()


def test_a_value_the_parser_refuses_is_named(tmp_path):
    path = sweep_file(tmp_path, "choice", sampler="grid", params={"model.net.init_args.noise": ["learned", "bogus"]})
    message = sweep_error(tmp_path, path)
    assert message.startswith(f"gram: sweep file {path}: gram fit rejects model.net.init_args.noise = bogus")


@pytest.mark.parametrize("params, expected", [
    ({"model.beta": {"low": 2.0, "high": 1.0}}, "the range is empty (low 2.0 > high 1.0)"),
    ({"model.beta": []}, "the list of values is empty"),
    ({"model.beta": {"low": 0.0, "high": 1.0, "log": True}}, "a log-scale range needs low > 0"),
    ({"model.beta": {"low": 0.1, "high": 1.0}}, "the grid sampler needs listed values"),
])
def test_empty_or_impossible_ranges_are_one_line(tmp_path, params, expected):
    sampler = "grid" if "grid" in expected else "tpe"
    path = sweep_file(tmp_path, "ranges", params=params, n_trials=2, sampler=sampler)
    assert sweep_error(tmp_path, path).startswith(f"gram: sweep file {path}: params model.beta: {expected}")


@pytest.mark.parametrize("entries, expected", [
    ({"metrc": "val/exact_acc"}, "unknown entry metrc"),
    ({"direction": "up"}, "'direction' must be maximize or minimize"),
    ({"sampler": "cmaes"}, "unknown sampler 'cmaes'"),
    ({"pruner": {"type": "median", "patience": 3}}, "pruner median:"),
    ({"n_trials": 0}, "'n_trials' must be a positive integer"),
])
def test_bad_sweep_file_entries_are_named(tmp_path, entries, expected):
    path = sweep_file(tmp_path, "entries", params={"model.beta": [0.5]}, **entries)
    assert expected in sweep_error(tmp_path, path)


def test_a_swept_key_on_the_command_line_is_refused(tmp_path):
    path = sweep_file(tmp_path, "twice", sampler="grid", params={"model.beta": [0.5, 1.0]})
    assert "--model.beta is swept by" in sweep_error(tmp_path, path, "--model.beta", "0.2")


def test_sweep_file_defaults():
    spec = load_sweep(ROOT / "experiments" / "sweeps" / "demo_gram_vs_trm.yaml")
    assert spec.sampler == "grid" and spec.n_trials == 2 and spec.name == "demo_gram_vs_trm"


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "experiments" / "sweeps").glob("*.yaml")))
def test_shipped_sweep_files_say_how_to_run_them_and_gram_fit_accepts_them(name, monkeypatch):
    path = ROOT / "experiments" / "sweeps" / name
    header = path.read_text().split("\n\n", 1)[0]
    assert header.startswith("#") and f"--sweep experiments/sweeps/{name}" in header
    command = next(line.lstrip("# ").strip() for line in header.splitlines() if "gram sweep --config" in line)
    options, fit_args = sweep.build_parser().parse_known_args(shlex.split(command)[2:])
    spec = load_sweep(options.sweep)
    configs = [arg for config in options.config for arg in ("--config", config)]
    monkeypatch.chdir(ROOT)
    save_dir = sweep.check_with_fit_parser(spec, sweep.TrialCommand(spec, configs, fit_args, "sqlite:///x.db", Path()))
    assert save_dir == Path("logs") and spec.n_trials >= 2


def test_report_says_what_pruning_saved():
    from gram_lightning.sweep_report import Run, pruning_savings

    def run(number, state, wall, step):
        return Run(number=number, name=f"trial_{number}", state=state, params={}, objective=0.0, metrics={},
                   wall_time_s=wall, step=step, log_dir="", command=None)

    runs = [run(0, "COMPLETE", 100.0, 1000), run(1, "COMPLETE", 120.0, 1000), run(2, "PRUNED", 30.0, 250),
            run(3, "PRUNED", 60.0, 500), run(4, "FAIL", None, None)]
    line = pruning_savings(runs)
    # The pruned trials took 90 s against 2 x 110 s: 130 s saved of the 310 + 130 s an unpruned sweep would take.
    assert "2 of 5 trials stopped early (at steps 250, 500)" in line
    assert "saved 130 s of trial time, 30% of the 440 s" in line
    assert pruning_savings(runs[:2]) is None and pruning_savings(runs[2:]) is None


def test_workers_share_the_cores_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert sweep.trial_environment(4)["OMP_NUM_THREADS"] == "4"
    assert sweep.trial_environment(32)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert sweep.trial_environment(4)["OMP_NUM_THREADS"] == "3"
