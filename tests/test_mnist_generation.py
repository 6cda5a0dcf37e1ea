"""Binarized MNIST end to end through the `gram` CLI: ImageGRAM trains from blank inputs, validation logs FID and
IS, `gram predict` writes a picture of the samples with their metrics, the classifier stays out of the model."""

import json
from pathlib import Path

import torch

from datamodules.mnist import BinarizedMNISTDataModule
from conftest import build_cli
from datamodules.mnist.classifier import MNISTClassifier
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
