"""Training and inference throughput of the GRAM core at the Sudoku and ARC shapes.

One training step = one supervision step (T transitions, the last with gradients) + losses + backward
+ AdamW (+ the puzzle embeddings' sparse sign-SGD at the ARC shapes), what GRAMModule.training_step runs.
Inference = puzzles per second for a full N_sup-step rollout from the prior at width N (N trajectories per
puzzle in one batch).

    python benchmarks/throughput.py                       # paper Sudoku shapes (batch 768, D 512), needs a GPU
    python benchmarks/throughput.py --preset arc --cores attention   # ARC: 900 + 16 tokens, 800k puzzle ids
    python benchmarks/throughput.py --preset cpu-small    # what a 2-core CPU can run in a minute

Prints a markdown table and writes benchmarks/results/throughput-<device>-<preset>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from gram_lightning import losses
from gram_lightning.model import GRAM

SUDOKU = dict(vocab=11, seq_len=81, puzzle_ids=0)
# ARC-AGI-1 with 1000 variants: 800 tasks x 1000 puzzle embeddings of width D in the prefix.
ARC = dict(vocab=12, seq_len=900, puzzle_ids=800_000)
PRESETS = {
    # The paper's Sudoku shapes (spec section 5): batch 768, 81 + 16 tokens, D 512, 2 layers, T 3, K 6.
    "paper": dict(SUDOKU, batch=768, hidden=512, heads=8, T=3, K=6, N_sup=16, puzzles=1000, warmup=5, iters=20),
    "cpu-small": dict(SUDOKU, batch=16, hidden=64, heads=4, T=3, K=6, N_sup=16, puzzles=8, warmup=1, iters=5),
    # The paper's ARC shapes: batch 768, 900 + 16 tokens, D 512, T 3, K 4.
    "arc": dict(ARC, batch=768, hidden=512, heads=8, T=3, K=4, N_sup=16, puzzles=256, warmup=3, iters=10),
    "arc-cpu-small": dict(ARC, puzzle_ids=8000, batch=2, hidden=64, heads=4, T=3, K=4, N_sup=2, puzzles=2, warmup=1, iters=2),
}


def build_net(core: str, noise: str, cfg: dict, device: torch.device) -> GRAM:
    return GRAM(vocab_size=cfg["vocab"], seq_len=cfg["seq_len"], num_puzzle_ids=cfg["puzzle_ids"], puzzle_prefix_len=16,
                hidden_size=cfg["hidden"], num_heads=cfg["heads"], core=core,
                pos_encoding="none" if core == "mlp_t" else "rope", T=cfg["T"], K=cfg["K"], N_sup=cfg["N_sup"],
                noise=noise).to(device)


def random_batch(cfg: dict, rows: int, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    inputs = torch.randint(1, cfg["vocab"], (rows, cfg["seq_len"]), device=device)
    puzzle_ids = torch.randint(cfg["puzzle_ids"], (rows,), device=device) if cfg["puzzle_ids"] else None
    return inputs, puzzle_ids


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_training(net: GRAM, cfg: dict, device, autocast, compile_step: bool) -> float:
    """Seconds per training supervision step."""
    B = cfg["batch"]
    inputs, puzzle_ids = random_batch(cfg, B, device)
    labels = torch.randint(2, cfg["vocab"], (B, cfg["seq_len"]), device=device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1.0, betas=(0.9, 0.95), fused=device.type == "cuda")
    step_fn = torch.compile(net.supervision_step) if compile_step else net.supervision_step
    h, l = (t.clone() for t in net.initial_state(B))
    posterior = net.posterior is not None

    def one_step():
        nonlocal h, l
        with autocast:
            e = net.embed_input(inputs, puzzle_ids)
            context = net.embed_target(labels) if posterior else None
            out = step_fn(h, l, e, "posterior" if posterior else "prior", context)
            loss = losses.mean_over_tokens(losses.token_cross_entropy(out.logits, labels), labels).mean()
            if out.noise is not None and out.noise.posterior is not None:
                loss = loss + 0.1 * losses.balanced_kl(out.noise.posterior, out.noise.prior).mean()
            loss = loss + 0.5 * losses.halt_loss(out.halt_logits, torch.zeros_like(out.halt_logits)).mean()
            loss = loss + 0.5 * losses.value_loss(out.value, torch.zeros_like(out.value)).mean()
        loss.backward()
        if net.puzzle_embed is not None:
            net.puzzle_embed.step(lr=1e-2, weight_decay=0.1)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        h, l = out.h.detach(), out.l.detach()

    for _ in range(cfg["warmup"]):
        one_step()
    sync(device)
    start = time.perf_counter()
    for _ in range(cfg["iters"]):
        one_step()
    sync(device)
    return (time.perf_counter() - start) / cfg["iters"]


@torch.no_grad()
def time_inference(net: GRAM, cfg: dict, width: int, device, autocast, compile_step: bool) -> float:
    """Puzzles per second for full-depth prior rollouts of `width` trajectories each."""
    step_fn = torch.compile(net.supervision_step) if compile_step else net.supervision_step
    puzzles = cfg["puzzles"]
    chunk = max(1, min(puzzles, (cfg["batch"] * 4) // width))  # trajectories per forward pass ~ 4x the train batch
    inputs, puzzle_ids = random_batch(cfg, chunk * width, device)

    def run():
        done = 0
        while done < puzzles:
            with autocast:
                *_, out = net.rollout(inputs, cfg["N_sup"], puzzle_ids, step_fn=step_fn)
                out.logits.argmax(-1)
            done += chunk

    if compile_step or device.type == "cuda":
        run()  # warm-up: compilation, CUDA kernels and allocator
        sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return puzzles / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESETS, default="paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["bf16", "fp32"], default=None, help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on for GPU")
    parser.add_argument("--cores", nargs="+", default=["attention", "mlp_t"])
    parser.add_argument("--noise", nargs="+", default=["learned", "none"], help="learned = GRAM, none = TRM")
    parser.add_argument("--widths", nargs="+", type=int, default=[1, 20])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    cfg = PRESETS[args.preset]
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    compile_step = args.compile if args.compile is not None else device.type == "cuda"
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"

    rows = []
    for core in args.cores:
        for noise in args.noise:
            torch.manual_seed(0)
            net = build_net(core, noise, cfg, device)
            step_s = time_training(net, cfg, device, autocast, compile_step)
            row = {"core": core, "noise": noise, "params_M": sum(p.numel() for p in net.parameters()) / 1e6,
                   "train_ms_per_step": 1000 * step_s, "train_steps_per_s": 1 / step_s,
                   "train_samples_per_s": cfg["batch"] / step_s}
            net.eval()
            for width in args.widths:
                row[f"infer_puzzles_per_s_N{width}"] = time_inference(net, cfg, width, device, autocast, compile_step)
            rows.append(row)
            print(json.dumps(row), flush=True)

    header = ["core", "noise", "params (M)", "train ms/step", "train steps/s", "train samples/s",
              *[f"infer puzzles/s N={w}" for w in args.widths]]
    print(f"\nDevice: {device_name}; preset {args.preset} {cfg}; precision {precision}; compile {compile_step}; torch {torch.__version__}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [r["core"], r["noise"], f"{r['params_M']:.2f}", f"{r['train_ms_per_step']:.1f}", f"{r['train_steps_per_s']:.2f}",
                 f"{r['train_samples_per_s']:.0f}", *[f"{r[f'infer_puzzles_per_s_N{w}']:.1f}" for w in args.widths]]
        print("| " + " | ".join(cells) + " |")

    out = Path(args.out or Path(__file__).parent / "results" / f"throughput-{device.type}-{args.preset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device_name, "preset": args.preset, "config": cfg, "precision": precision,
                               "compile": compile_step, "torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
