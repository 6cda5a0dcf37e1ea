"""Width selection rules and the solve metrics on hand-made samples."""

import pytest
import torch

from gram_lightning.metrics import SolveMetrics
from gram_lightning.selection import first_occurrences, select, vote_counts

A, B, C = [2, 3], [3, 2], [4, 4]


def test_vote_counts_and_first_occurrences():
    preds = torch.tensor([[A, B, A, C, A]])
    assert vote_counts(preds).tolist() == [[3, 1, 3, 1, 3]]
    assert first_occurrences(preds).tolist() == [[True, True, False, True, False]]


def test_vote_picks_the_majority_and_lprm_breaks_ties():
    preds = torch.tensor([[A, B, A, C], [A, B, B, A]])
    value = torch.tensor([[0.1, 0.9, 0.2, 0.3], [0.1, 0.2, 0.6, 0.5]])
    halt = torch.tensor([[0.0, 5.0, 0.0, -1.0], [1.0, 0.0, 0.0, 2.0]])
    vote = select(preds, "vote", value, halt)
    assert vote.output.tolist() == [A, B]  # row 2 is a 2-2 tie: B holds the highest value
    assert vote.score.tolist() == [0.5, 0.5]
    assert select(preds, "lprm", value, halt).index.tolist() == [1, 2]
    assert select(preds, "halt", value, halt).index.tolist() == [1, 3]
    assert select(preds, "first", value, halt).index.tolist() == [0, 0]
    with pytest.raises(ValueError, match="selection"):
        select(preds, "best", value, halt)


def test_solve_metrics_on_hand_made_samples():
    metric = SolveMetrics()
    samples = torch.tensor([[A, B, A], [C, C, C]])  # puzzle 1 has two solutions A and B; puzzle 2 none found
    labels = torch.tensor([B, [4, 3]])
    is_solution = torch.tensor([[True, True, True], [False, False, False]])
    chosen = torch.tensor([A, C])
    metric.update(samples, chosen, labels, is_solution, is_solution[:, 0], num_solutions=torch.tensor([4, 2]))
    out = metric.compute()
    assert out["exact_acc"] == 0.5  # A solves puzzle 1 although the label is B
    assert out["exact_match"] == 0.0
    assert out["token_acc"] == pytest.approx(0.25)  # A vs B: 0 of 2 tokens; C vs [4, 3]: 1 of 2
    assert out["pass_at_n"] == 0.5
    assert out["distinct_solutions"] == 1.0  # 2 distinct on puzzle 1, 0 on puzzle 2
    assert out["coverage"] == pytest.approx((2 / 4 + 0 / 2) / 2)


def test_token_accuracy_ignores_pad():
    metric = SolveMetrics()
    samples = torch.tensor([[[2, 3, 5]]])
    labels = torch.tensor([[2, 4, 0]])
    metric.update(samples, samples[:, 0], labels, torch.tensor([[False]]), torch.tensor([False]))
    out = metric.compute()
    assert out["token_acc"] == 0.5 and "coverage" not in out


def test_distinct_solutions_use_canonical_keys_and_conflicts_are_summed():
    metric = SolveMetrics()
    # Colorings [3, 4, 3] and [4, 3, 4] are one coloring up to color permutation: same canonical key.
    samples = torch.tensor([[[3, 4, 3], [4, 3, 4], [3, 3, 4]]])
    keys = torch.tensor([[[3, 4, 3], [3, 4, 3], [3, 3, 4]]])
    is_solution = torch.tensor([[True, True, True]])
    metric.update(samples, samples[:, 0], samples[:, 0], is_solution, is_solution[:, 0], torch.tensor([4]), keys,
                  chosen_conflicts=torch.tensor([2]))
    metric.update(samples, samples[:, 0], samples[:, 0], is_solution, is_solution[:, 0], torch.tensor([4]), keys,
                  chosen_conflicts=torch.tensor([0]))
    out = metric.compute()
    assert out["distinct_solutions"] == 2.0 and out["coverage"] == pytest.approx(0.5)
    assert out["conflict_edges"] == 2.0 and out["conflict_edges_per_input"] == 1.0
