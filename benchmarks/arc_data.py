"""ARC data pipeline cost: building the variant table (once, cached), loading it, and materialising batches.

    python benchmarks/arc_data.py                              # both versions, 1000 variants, 2 processes
    python benchmarks/arc_data.py --versions arc-agi-1 --num-proc 8

Each version is built into a fresh cache folder (so the build is timed, not a cache hit). Prints a markdown
table and writes benchmarks/results/arc_data-<num_variants>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from datamodules.arc import ARCDataModule
from datamodules.cache import _folder_size


def measure(version: str, num_variants: int, num_proc: int, batch_size: int, cache_dir: Path) -> dict:
    start = time.perf_counter()
    dm = ARCDataModule(version=version, num_variants=num_variants, num_proc=num_proc, batch_size=batch_size,
                       cache_dir=str(cache_dir))
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    dm.prepare_data()
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    dm.setup("fit")
    setup_s = time.perf_counter() - start
    variants = sum(v is not None for v in dm.data.variants)

    train = dm.batches(dm.splits["train"])
    train.translate = True
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(len(train), (batch_size,), generator=generator).tolist() for _ in range(5)]
    train.__getitems__(batches[0])  # warm-up
    start = time.perf_counter()
    for indices in batches:
        train.__getitems__(indices)
    per_batch_s = (time.perf_counter() - start) / len(batches)
    return {
        "version": version, "tasks": len(dm.tasks), "evaluation_tasks": sum(t.evaluation for t in dm.tasks),
        "num_variants": num_variants, "variants_drawn": variants, "puzzle_ids": dm.num_puzzle_ids,
        "train_examples": len(dm.splits["train"]), "test_inputs": len(dm.groups), "test_examples": len(dm.splits["test"]),
        "read_s": read_s, "build_s": build_s, "setup_s": setup_s, "cache_mb": _folder_size(cache_dir) / 2**20,
        "batch_size": batch_size, "materialise_ms_per_batch": 1000 * per_batch_s,
        "materialise_examples_per_s_per_process": batch_size / per_batch_s, "num_proc": num_proc,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", nargs="+", default=["arc-agi-1", "arc-agi-2"])
    parser.add_argument("--num-variants", type=int, default=1000)
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=768)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    rows = []
    for version in args.versions:
        cache_dir = Path(tempfile.mkdtemp(prefix="arc-bench-"))
        try:
            rows.append(measure(version, args.num_variants, args.num_proc, args.batch_size, cache_dir))
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        print(json.dumps(rows[-1]), flush=True)

    host = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"\nHost: {host}; {args.num_proc} build processes; torch {torch.__version__}\n")
    header = ["version", "tasks (eval)", "variants drawn", "train examples", "test inputs x variants",
              "variant build (s)", "cache (MB)", "setup (s)", f"batch of {args.batch_size} (ms, 1 process)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [r["version"], f"{r['tasks']} ({r['evaluation_tasks']})", f"{r['variants_drawn']:,}",
                 f"{r['train_examples']:,}", f"{r['test_inputs']} x {r['num_variants']} = {r['test_examples']:,}",
                 f"{r['build_s']:.1f}", f"{r['cache_mb']:.1f}", f"{r['setup_s']:.1f}", f"{r['materialise_ms_per_batch']:.0f}"]
        print("| " + " | ".join(cells) + " |")
    out = Path(args.out or Path(__file__).parent / "results" / f"arc_data-{args.num_variants}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"host": host, "torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
