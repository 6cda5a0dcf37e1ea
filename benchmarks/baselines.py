"""GRAM, TRM and the generative baselines (AR, MDLM) side by side on one task config, on this machine: parameter
count, training time per optimizer step and per training example, sampling time per input at width N.

    python benchmarks/baselines.py --config experiments/nqueens8_cpu.yaml
    python benchmarks/baselines.py --config experiments/graph_coloring8_cpu.yaml --num_samples 20

Each model is the task config plus its overlay (experiments/baselines/trm.yaml, ar.yaml, mdlm.yaml), so widths and
optimizer are the task's. A training step is one optimizer step on a batch of the task's batch size: for GRAM and
TRM one supervision step, and an example stays in the batch for up to N_sup of them (ACT), so its cost per training
example is N_sup steps' worth (an upper bound: halting ends some early); AR and MDLM see an example once per step.
Sampling is N samples per input at the model's default depth (GRAM: N_sup supervision steps; MDLM: one denoising step
per output token; AR: one pass per token with a KV cache). Prints a table and writes
benchmarks/results/baselines-<config>-<device>.json.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import lightning as L
import torch

from gram_lightning.atomic import atomic_write_json
from gram_lightning.cli import build_cli
from gram_lightning.run_loading import print_table, use_tf32_on_gpu

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"gram": [], "trm": ["experiments/baselines/trm.yaml"], "ar": ["experiments/baselines/ar.yaml"],
          "mdlm": ["experiments/baselines/mdlm.yaml"]}


def synchronize() -> None:
    """Wait for the GPU's queued work, so that a wall-clock reading covers it (CUDA calls return before they run)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepTimer(L.Callback):
    """Wall time of each training batch (forward, backward, optimizer step)."""

    def __init__(self):
        self.times: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        synchronize()
        self.start = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        synchronize()
        self.times.append(time.perf_counter() - self.start)


def measure(config: str, overlays: list[str], warmup: int, steps: int, num_samples: int, inputs: int) -> dict:
    args = ["--config", config]
    for overlay in overlays:
        args += ["--config", str(ROOT / overlay)]
    cli = build_cli([*args, "--trainer.logger", "false"], run=False)
    module, data = cli.model, cli.datamodule
    timer = StepTimer()
    trainer = L.Trainer(accelerator="auto", devices=1, max_steps=warmup + steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        callbacks=[timer])
    trainer.fit(module, data)
    step = sum(timer.times[warmup:]) / max(1, len(timer.times[warmup:]))
    batch_size = data.batch_size
    per_example_steps = getattr(module.net, "N_sup", 1) if hasattr(module, "carry") else 1

    module.to(trainer.strategy.root_device)  # the trainer hands the module back on the CPU when fit ends
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    batch = {k: v[:inputs].to(module.device) for k, v in batch.items()}
    with module.evaluating():
        module.sample(batch, num_samples)  # warm-up
        synchronize()
        start = time.perf_counter()
        module.sample(batch, num_samples)
        synchronize()
        sampling = time.perf_counter() - start
    return {
        "params": sum(p.numel() for p in module.parameters()),
        "train ms/step": 1e3 * step,
        "batch": batch_size,
        "train ms/example": 1e3 * step * per_example_steps / batch_size,
        "depth": module.default_depth,
        "sample ms/input": 1e3 * sampling / len(batch["inputs"]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a task config (experiments/*.yaml)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--warmup", type=int, default=3, help="training steps not timed")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed")
    parser.add_argument("--num_samples", type=int, default=20, help="width N of the sampling measurement")
    parser.add_argument("--inputs", type=int, default=32, help="test inputs sampled")
    parser.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/baselines-<config>-<device>.json)")
    args = parser.parse_args(argv)
    if not Path(args.config).is_file():
        sys.exit(f"baselines: config not found: {args.config}")
    sys.argv = sys.argv[:1]  # LightningCLI reads its arguments from `args`, not from this command line
    torch.manual_seed(0)
    use_tf32_on_gpu()  # as benchmarks/scaling.py samples
    rows = []
    for name in args.models:
        rows.append({"model": name, **measure(args.config, MODELS[name], args.warmup, args.steps, args.num_samples, args.inputs)})
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    title = f"{Path(args.config).stem}: N = {args.num_samples}, {device}"
    print_table(title, rows, list(rows[0]), ".3g")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"baselines-{Path(args.config).stem}-{'gpu' if torch.cuda.is_available() else 'cpu'}.json"
    atomic_write_json(out, {"config": args.config, "device": device, "num_samples": args.num_samples, "rows": rows})
    print(f"written to {out}")


if __name__ == "__main__":
    main()
