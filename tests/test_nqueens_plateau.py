"""benchmarks/nqueens_plateau.py: per-board cell statistics of an N-Queens output, grouped by completions."""
import pytest
import torch
from conftest import load_benchmark

from datamodules.nqueens.boards import EMPTY_TOKEN, QUEEN_TOKEN


def test_a_marginal_below_one_half_copies_the_input_and_its_mass_sits_on_the_free_cells():
    script = load_benchmark("nqueens_plateau")
    # Two 4x4 boards: the first gives one queen, the second two; the label completes each.
    inputs = torch.full((2, 16), EMPTY_TOKEN)
    inputs[0, 1] = inputs[1, 1] = inputs[1, 7] = QUEEN_TOKEN
    labels = inputs.clone()
    labels[0, [7, 8, 14]] = labels[1, [8, 14]] = QUEEN_TOKEN
    # The model: the given queens certain, 0.2 on every free cell (argmax empty), 0.4 on the label's queens.
    probs = torch.where(inputs == QUEEN_TOKEN, 1.0, 0.2)
    probs = torch.where((labels == QUEEN_TOKEN) & (inputs != QUEEN_TOKEN), 0.4, probs)
    preds = torch.where(probs > 0.5, QUEEN_TOKEN, EMPTY_TOKEN)
    stats = script.cell_stats(inputs, labels, probs, preds)
    assert stats["queens_given"].tolist() == [1, 2] and stats["queens_placed"].tolist() == [1, 2]
    assert stats["copies_input"].tolist() == [1, 1]
    assert stats["free_prob_sum"][0].item() == pytest.approx(12 * 0.2 + 3 * 0.4)
    assert stats["free_prob_max"].tolist() == pytest.approx([0.4, 0.4])
    assert stats["label_queen_prob"].tolist() == pytest.approx([0.4, 0.4])
    assert stats["free_cell_prob"][1].item() == pytest.approx((12 * 0.2 + 2 * 0.4) / 14)

    rows = script.summarise(stats, solved=torch.tensor([False, True]), num_solutions=torch.tensor([1, 3]))
    assert [(r["group"], r["inputs"]) for r in rows] == [("all", 2), ("one completion", 1), ("several", 1)]
    assert rows[0]["solved"] == 0.5 and rows[2]["queens_given"] == 2
