"""The `gram` command end to end: configs parse, fit -> test -> predict from a checkpoint, resume, errors."""

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import build_cli
from gram_lightning.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "experiments").glob("*.yaml"))


def tiny_args(tmp_path: Path, *extra: str) -> list[str]:
    """The demo config shrunk to seconds: a 4x4 multi-solution Sudoku set and a one-layer net."""
    return [
        "--config", str(ROOT / "experiments" / "demo.yaml"),
        "--trainer.max_steps", "6", "--trainer.val_check_interval", "3", "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
        "--model.net.init_args.hidden_size", "16", "--model.net.init_args.num_heads", "2",
        "--model.net.init_args.num_layers", "1", "--model.net.init_args.N_sup", "2",
        "--data.init_args.num_train_puzzles", "40", "--data.init_args.num_test_puzzles", "12",
        "--data.init_args.num_val_puzzles", "8", "--data.init_args.batch_size", "8",
        "--data.init_args.cache_dir", str(tmp_path / "cache"),
        *extra,
    ]


def run_gram(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}")
    return subprocess.run([sys.executable, "-m", "gram_lightning.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_shipped_config_parses_and_instantiates(config, tmp_path):
    # The puzzle DataModules build their data into cache_dir; MNIST reads its files from data_dir.
    folder = "data_dir" if config.name.startswith("mnist") else "cache_dir"
    cli = build_cli(["--config", str(config), f"--data.init_args.{folder}", str(tmp_path)])
    net = cli.model.net
    # An image model runs on patches: its pixel count is the data's sequence length.
    assert (net.vocab_size, getattr(net, "num_pixels", net.seq_len)) == (cli.datamodule.vocab_size, cli.datamodule.seq_len)
    assert_shared_defaults(cli.config, cli.trainer, config.stem)


def assert_shared_defaults(config, trainer, name: str) -> None:
    """What gram_lightning/defaults.yaml gives every run, whether a task config adds to it or replaces a part."""
    assert config["seed_everything"] == 0
    assert (trainer.max_epochs, trainer.gradient_clip_val) == (-1, 1.0)
    assert (trainer.logger.save_dir, trainer.logger.name) == ("logs", name)
    kinds = [type(cb).__name__ for cb in trainer.callbacks]
    assert kinds.count("RampedEMA") == 1 and kinds.count("ModelCheckpoint") == 1 and "LearningRateMonitor" in kinds
    assert trainer.checkpoint_callback.save_last


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_every_subcommand_starts_from_the_shared_defaults(subcommand, capsys):
    with pytest.raises(SystemExit):
        main([subcommand, "--config", str(ROOT / "experiments" / "nqueens8.yaml"), "--print_config"])
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["seed_everything"] == 0 and resolved["trainer"]["logger"]["init_args"]["save_dir"] == "logs"
    callbacks = {c["class_path"].rsplit(".", 1)[1]: c["init_args"] for c in resolved["trainer"]["callbacks"]}
    assert callbacks["ModelCheckpoint"]["save_last"] and callbacks["RampedEMA"]["decay"] == 0.9999
    assert "SampleBoards" in callbacks and "LearningRateMonitor" in callbacks


OVERLAYS = sorted((ROOT / "experiments" / "baselines").glob("*.yaml"))


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[c.name for c in OVERLAYS])
def test_every_baseline_overlay_applies_to_a_task_config(overlay, tmp_path):
    cli = build_cli(["--config", str(ROOT / "experiments" / "nqueens8.yaml"), "--config", str(overlay),
                        "--data.init_args.cache_dir", str(tmp_path)])
    assert cli.trainer.logger.version == overlay.stem  # each baseline logs under its own name
    assert_shared_defaults(cli.config, cli.trainer, "nqueens8")
    assert cli.model.net.seq_len == 64


@pytest.mark.parametrize("config", ["nqueens8_cpu.yaml", "nqueens10_cpu.yaml"])
def test_nqueens_cpu_configs_give_gram_the_mixing_prior_and_trm_no_noise_heads(config, tmp_path):
    from gram_lightning.model import MixingGaussianHead

    args = ["--config", str(ROOT / "experiments" / config), "--data.init_args.cache_dir", str(tmp_path)]
    assert isinstance(build_cli(args).model.net.prior, MixingGaussianHead)
    trm = build_cli([*args, "--config", str(ROOT / "experiments" / "baselines" / "trm.yaml")]).model.net
    assert not any(name.startswith(("prior.", "posterior.")) for name, _ in trm.named_parameters())


LEVERS = re.findall(r"^\s+\[(\w+)\]=\"([^\"]+)\"", (ROOT / "benchmarks" / "nqueens_levers.sh").read_text(), re.M)


@pytest.mark.parametrize("lever,args", LEVERS, ids=[name for name, _ in LEVERS])
def test_every_nqueens_lever_parses_on_the_cpu_config(lever, args, tmp_path):
    cli = build_cli(["--config", str(ROOT / "experiments" / "nqueens8_cpu.yaml"), *args.split(),
                     "--data.init_args.cache_dir", str(tmp_path)])
    key, value = args.split()[-2:]
    parsed = cli.config["model"]["init_args"]
    for part in key.removeprefix("--model.").split("."):
        parsed = parsed[part]
    assert str(parsed) == value, lever


def test_fit_then_test_and_predict_from_checkpoint(tmp_path):
    fit = run_gram("fit", *tiny_args(tmp_path), cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    run_dir = tmp_path / "logs" / "demo" / "version_0"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (run_dir / "config.yaml").is_file()
    assert "Width scaling" in fit.stdout  # the demo's report table
    report = json.loads((run_dir / "width_scaling.json").read_text())
    assert {(r["N"], r["selection"]) for r in report} == {(1, "-"), (8, "vote"), (8, "lprm"), (32, "vote"), (32, "lprm")}
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert "val/samples" in events.Tags()["images"]  # the SampleBoards picture
    assert "val/exact_acc" in events.Tags()["scalars"]

    # the checkpoint restores the network; only data and inference knobs come from the command line
    common = ["--config", str(run_dir / "config.yaml"), "--ckpt_path", str(ckpt),
              "--trainer.logger.init_args.save_dir", str(tmp_path / "eval")]
    test = run_gram("test", *common, "--model.num_samples", "4", "--model.num_steps", "3",
                    "--model.selection", "lprm", cwd=tmp_path)
    assert test.returncode == 0, test.stderr[-3000:]
    results = json.loads(next((tmp_path / "eval").rglob("test_metrics.json")).read_text())
    assert results["settings"]["num_samples"] == 4 and results["settings"]["num_steps"] == 3
    assert results["settings"]["selection"] == "lprm"
    assert 0.0 <= results["metrics"]["test/exact_acc"] <= 1.0 and "test/distinct_solutions" in results["metrics"]

    predict = run_gram("predict", *common, "--model.num_samples", "3", cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr[-3000:]
    lines = next((tmp_path / "eval").rglob("predictions.jsonl")).read_text().splitlines()
    assert len(lines) == 12
    row = json.loads(lines[0])
    assert len(row["inputs"]) == 16 and len(row["target"]) == 16
    assert len(row["samples"]) == 3 and row["chosen"] in row["samples"] and isinstance(row["score"], float)


def test_resume_continues_with_same_step_and_ema_state(tmp_path):
    first = build_cli(tiny_args(tmp_path, "--trainer.max_steps", "4", "--trainer.val_check_interval", "2"))
    first.trainer.fit(first.model, first.datamodule)
    ckpt_path = Path(first.trainer.checkpoint_callback.last_model_path)
    saved = torch.load(ckpt_path, weights_only=True)
    assert saved["global_step"] == 4 and "averaging_state" in saved and "current_model_state" in saved

    seen = {}

    class RecordResumeState(L.Callback):
        def on_train_start(self, trainer, pl_module):
            ema = next(cb for cb in trainer.callbacks if type(cb).__name__ == "RampedEMA")
            seen["step"] = trainer.global_step
            seen["examples"] = int(pl_module.examples_seen)
            seen["ema"] = {k: v.clone() for k, v in ema._average_model.module.state_dict().items()}
            seen["current"] = {k: v.clone() for k, v in pl_module.state_dict().items()}

    second = build_cli(tiny_args(tmp_path, "--trainer.max_steps", "8", "--trainer.val_check_interval", "2"))
    second.trainer.callbacks.append(RecordResumeState())
    second.trainer.fit(second.model, second.datamodule, ckpt_path=str(ckpt_path))
    assert seen["step"] == 4 and second.trainer.global_step == 8
    assert seen["examples"] == saved["gram_examples_seen"] == int(first.model.examples_seen) > 0
    for key, value in saved["state_dict"].items():  # the checkpoint's state_dict holds the EMA weights
        torch.testing.assert_close(seen["ema"][key], value)
    for key, value in saved["current_model_state"].items():
        torch.testing.assert_close(seen["current"][key], value)


@pytest.mark.slow  # a `gram fit`, then a `gram test`
def test_gram_test_checks_its_checkpoint_once(tmp_path, monkeypatch):
    main(["fit", *tiny_args(tmp_path, "--trainer.max_steps", "2", "--trainer.callbacks+", "[]")])
    run_dir = tmp_path / "logs" / "demo" / "version_0"
    import gram_lightning.base_module as base_module

    calls = []
    check = base_module.check_checkpoint_fits
    monkeypatch.setattr(base_module, "check_checkpoint_fits", lambda *a, **k: (calls.append(1), check(*a, **k))[1])
    main(["test", "--config", str(run_dir / "config.yaml"), "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"),
          "--trainer.logger.init_args.save_dir", str(tmp_path / "eval")])
    assert len(calls) == 1  # by the CLI before the run; the load that follows does not scan the weights again


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint" * 10)
    for path, message in ((bad, "corrupt"), (tmp_path / "missing.ckpt", "not found")):
        with pytest.raises(SystemExit) as excinfo:
            main(["test", *tiny_args(tmp_path), "--ckpt_path", str(path)])
        assert message in str(excinfo.value.code) and str(path) in str(excinfo.value.code)


def test_bad_config_key_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *tiny_args(tmp_path), "--model.net.init_args.hiden_size", "8"])
    assert "hiden_size" in capsys.readouterr().err


def test_ddp_two_cpu_processes_draw_different_noise(tmp_path):
    out = tmp_path / "noise.json"
    result = run_gram(
        "fit", *tiny_args(tmp_path, "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.max_steps", "2",
                          "--model.act", "false", "--trainer.callbacks+=ddp_probe.RecordRankNoise",
                          f"--trainer.callbacks.init_args.path={out}"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    noise = json.loads(out.read_text())
    assert len(noise) == 2 and noise[0] != noise[1]
    # Without ACT each row keeps its example for N_sup = 2 steps: 2 steps drew one batch of 8 on each rank.
    saved = torch.load(tmp_path / "logs" / "demo" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["gram_examples_seen"] == 2 * 8
