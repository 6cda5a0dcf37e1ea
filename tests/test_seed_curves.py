"""benchmarks/seed_curves.py: seeds grouped by folder name, their validation curves with the examples drawn."""
import json
from pathlib import Path

import pytest
from conftest import load_benchmark
from torch.utils.tensorboard import SummaryWriter


def seed_curves():
    return load_benchmark("seed_curves")


def write_run(folder: Path, acc: dict[int, float], examples: dict[int, float] | None = None) -> None:
    writer = SummaryWriter(str(folder))
    for step, value in acc.items():
        writer.add_scalar("val/sample_acc", value, step)
    for step, value in (examples or {}).items():
        writer.add_scalar("train/examples", value, step)
    writer.close()


def test_curves_average_seeds_and_carry_the_examples_drawn(tmp_path):
    # Two GRAM seeds that log the counter (one more often than validation), and an AR run that does not.
    write_run(tmp_path / "gram_s0", {249: 0.1, 499: 0.3}, {224: 7000, 249: 8000, 499: 16000})
    write_run(tmp_path / "gram_s1", {249: 0.2, 499: 0.5}, {249: 8100, 474: 15000})
    write_run(tmp_path / "ar_s0", {515: 0.4})
    seed_curves().main([str(tmp_path), "--metrics", "val/sample_acc", "--examples_per_step", "ar=128",
                        "--out", str(tmp_path / "out")])
    curves = json.loads((tmp_path / "out" / "curves.json").read_text())
    gram = curves["gram"]["curve"]
    assert [row["step"] for row in gram] == [249, 499]
    assert gram[1]["val/sample_acc"]["mean"] == pytest.approx(0.4) and gram[1]["val/sample_acc"]["seeds"] == 2
    assert gram[0]["examples"]["mean"] == pytest.approx(8050)
    assert gram[1]["examples"]["mean"] == pytest.approx((16000 + 15000) / 2)  # the last value logged by then
    assert curves["ar"]["curve"][0]["examples"]["mean"] == 516 * 128
    by_seed = (tmp_path / "out" / "curves_by_seed.csv").read_text().splitlines()
    assert by_seed[0] == "model,seed,step,metric,value"
    assert "gram,1,499,val/sample_acc,0.5" in by_seed and len(by_seed) == 1 + 5


def test_scaling_tables_come_from_the_named_subfolder(tmp_path):
    for seed, acc in ((0, 0.4), (1, 0.6)):
        write_run(tmp_path / f"gram_s{seed}", {249: acc})
        folder = tmp_path / f"gram_s{seed}" / "scaling4000"
        folder.mkdir()
        extra = "20,16,776,0.9\n" if seed == 0 else ""  # a cell only seed 0 measured
        (folder / "scaling.csv").write_text(f"N,steps,inputs,sample_acc\n{extra}20,8,776,{acc}\n")
    seed_curves().main([str(tmp_path), "--metrics", "val/sample_acc", "--scaling", "scaling4000", "--out", str(tmp_path / "out")])
    scaling = json.loads((tmp_path / "out" / "scaling.json").read_text())
    assert [(r["N"], r["steps"]) for r in scaling["gram"]] == [(20, 8)]
    assert scaling["gram"][0]["sample_acc"]["mean"] == pytest.approx(0.5)


def test_a_malformed_rate_is_one_line(tmp_path):
    write_run(tmp_path / "ar_s0", {515: 0.4})
    with pytest.raises(SystemExit, match="MODEL=N"):
        seed_curves().main([str(tmp_path), "--examples_per_step", "ar:128"])


def test_counts_print_as_counts_and_fractions_in_percent():
    is_rate = seed_curves().is_rate
    assert is_rate("val/sample_acc") and is_rate("val/coverage") and is_rate("pass_at_n")
    assert not any(map(is_rate, ["val/queen_conflicts", "val/sample_queen_conflicts", "conflict_edges",
                                 "sample_conflict_edges", "distinct_solutions", "steps"]))
