"""Binarized MNIST end to end through the `gram` CLI: ImageGRAM trains from blank inputs, validation logs FID and
IS, `gram predict` writes a picture of the samples with their metrics, the classifier stays out of the model; the
MDLM baseline trains on the same config and runs through benchmarks/generation.py."""

import csv
import json
import sys
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datamodules.mnist import BinarizedMNISTDataModule
from conftest import build_cli, load_benchmark
from datamodules.mnist.classifier import MNISTClassifier
from gram_lightning.baselines import MDLMModule
from gram_lightning.baselines.transformer import PatchTransformer
from tests.test_mnist import write_pickle

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.precision", "32-true",
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
        "--model.net.init_args.hidden_size", "16", "--model.net.init_args.num_heads", "2",
        "--model.net.init_args.conv_channels", "8", "--model.net.init_args.num_layers", "1",
        "--model.net.init_args.N_sup", "2", "--model.net.init_args.T", "1", "--model.net.init_args.K", "1",
        "--model.net.init_args.puzzle_prefix_len", "2", "--model.warmup_steps", "1",
        "--data.init_args.num_val_images", "8", "--data.init_args.num_test_images", "12",
        "--data.init_args.batch_size", "8", "--data.init_args.eval_batch_size", "8", "--data.init_args.num_workers", "0"]


def untrained_classifier(self, device="cpu"):
    # The real one needs 60,000 digits and a minute of training; the plumbing only needs its shapes.
    torch.manual_seed(0)
    return MNISTClassifier().eval().requires_grad_(False)


def test_mnist_fit_logs_fid_and_predict_writes_the_samples(tmp_path, monkeypatch):
    write_pickle(tmp_path / "mnist")
    monkeypatch.setattr(BinarizedMNISTDataModule, "classifier", untrained_classifier)
    args = ["--config", str(ROOT / "experiments" / "mnist.yaml"), *TINY,
            "--data.init_args.data_dir", str(tmp_path / "mnist"),
            "--trainer.logger.init_args.save_dir", str(tmp_path / "logs")]
    cli = build_cli(args)
    cli.trainer.fit(cli.model, cli.datamodule)
    logged = set(cli.trainer.callback_metrics)
    assert {"val/fid", "val/inception_score", "val/token_acc_posterior"} <= logged
    assert "val/exact_acc" not in logged  # no checker: accuracy would be meaningless for images
    assert "val/fid" in cli.trainer.progress_bar_metrics
    # The FID classifier is neither trained nor saved with the model.
    assert not any("inception" in k or "classifier" in k for k in cli.model.state_dict())
    optimized = {id(p) for group in cli.trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in cli.model.parameters()}

    predict = build_cli([*args, "--trainer.logger.init_args.version", "samples", "--model.num_steps", "3"])
    ckpt = next((tmp_path / "logs").rglob("last.ckpt"))
    predict.trainer.predict(predict.model, predict.datamodule, ckpt_path=str(ckpt))
    run_dir = tmp_path / "logs" / "mnist" / "samples"
    report = json.loads((run_dir / "sample_metrics.json").read_text())
    assert report["num_samples"] == 12 and report["settings"]["num_steps"] == 3
    assert {"fid", "inception_score"} <= set(report["metrics"])
    assert (run_dir / "samples.png").read_bytes()[:4] == b"\x89PNG"
    assert not (run_dir / "samples.txt").exists()  # images are not text


# The MDLM baseline after the CPU MNIST config, its widths tiny; conv_channels and image_size carry over from ImageGRAM.
MDLM_TINY = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
             "--model.net.init_args.hidden_size", "16", "--model.net.init_args.num_heads", "2",
             "--model.net.init_args.conv_channels", "8", "--model.net.init_args.num_layers", "1",
             "--model.warmup_steps", "1", "--model.sampling_steps", "3",
             "--data.init_args.num_val_images", "8", "--data.init_args.num_test_images", "12",
             "--data.init_args.batch_size", "8", "--data.init_args.eval_batch_size", "8"]


def run_generation_sweep(argv: list[str]) -> None:
    """benchmarks/generation.py's main in this process (where the untrained classifier is patched in)."""
    load_benchmark("generation").main(argv)


def test_mdlm_on_mnist_fits_draws_sample_boards_and_runs_the_generation_sweep(tmp_path, monkeypatch):
    write_pickle(tmp_path / "mnist")
    monkeypatch.setattr(BinarizedMNISTDataModule, "classifier", untrained_classifier)
    monkeypatch.setattr(sys, "argv", sys.argv[:1])
    cli = build_cli(["--config", str(ROOT / "experiments" / "mnist_cpu.yaml"),
                     "--config", str(ROOT / "experiments" / "baselines" / "mdlm.yaml"), *MDLM_TINY,
                     "--data.init_args.data_dir", str(tmp_path / "mnist"),
                     "--trainer.logger.init_args.save_dir", str(tmp_path / "logs")])
    net = cli.model.net
    assert isinstance(cli.model, MDLMModule) and isinstance(net.body, PatchTransformer)
    assert (net.image_size, net.body.encoder.patch_size, net.body.hidden_size) == (28, 2, 16)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert {"val/fid", "val/inception_score"} <= set(cli.trainer.callback_metrics)
    run_dir = tmp_path / "logs" / "mnist_cpu" / "mdlm"
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    board = events.Images("val/samples")[-1]  # SampleBoards: 4 rows of a real digit and 8 samples
    assert board.height >= 4 * 28 and board.width >= 9 * 28

    run_generation_sweep(["--config", str(run_dir / "config.yaml"),
                          "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"),
                          "--steps", "2", "5", "--out", str(tmp_path / "generation")])
    with open(tmp_path / "generation" / "generation.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["steps"], r["samples"]) for r in rows] == [("2", "12"), ("5", "12")]
    assert all(float(r["fid"]) >= 0 and float(r["inception_score"]) >= 1 - 1e-4 for r in rows)
    assert (tmp_path / "generation" / "samples_5.png").read_bytes()[:4] == b"\x89PNG"
