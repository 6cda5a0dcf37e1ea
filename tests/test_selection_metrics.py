"""Width selection rules and the solve metrics on hand-made samples."""

import pytest
import torch

from datamodules.graph_coloring.colorings import canonical_output
from gram_lightning.metrics import SolveMetrics
from gram_lightning.samples import Samples
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


def scored(preds, is_solution, chosen_index, keys=None, violations=None) -> Samples:
    """Hand-made Samples: preds (B, N, L), is_solution (B, N), chosen_index (B,)."""
    preds, is_solution = torch.as_tensor(preds), torch.as_tensor(is_solution)
    B, N = is_solution.shape
    return Samples(preds, preds if keys is None else torch.as_tensor(keys), torch.zeros(B, N), torch.zeros(B, N),
                   is_solution, None if violations is None else torch.as_tensor(violations), torch.ones(B, N, dtype=torch.long),
                   torch.as_tensor(chosen_index), torch.zeros(B))


def test_solve_metrics_on_hand_made_samples():
    metric = SolveMetrics()
    # puzzle 1 has two solutions A and B; puzzle 2 none found
    s = scored([[A, B, A], [C, C, C]], [[True, True, True], [False, False, False]], [0, 0])
    labels = torch.tensor([B, [4, 3]])
    metric.update(s, {"labels": labels, "num_solutions": torch.tensor([4, 2])})
    out = metric.compute()
    assert out["exact_acc"] == 0.5  # A solves puzzle 1 although the label is B
    assert out["sample_acc"] == 0.5  # 3 of the 6 samples are solutions
    assert out["exact_match"] == 0.0
    assert out["token_acc"] == pytest.approx(0.25)  # A vs B: 0 of 2 tokens; C vs [4, 3]: 1 of 2
    assert out["pass_at_n"] == 0.5
    assert out["distinct_solutions"] == 1.0  # 2 distinct on puzzle 1, 0 on puzzle 2
    assert out["coverage"] == pytest.approx((2 / 4 + 0 / 2) / 2)


def test_sample_accuracy_counts_every_sample_not_the_vote():
    metric = SolveMetrics()
    # The vote picks the valid answer every time, but only 2 of 5 samples are valid: single-shot accuracy 40%.
    s = scored([[A, A, B, C, C]], [[True, True, False, False, False]], [0])
    metric.update(s, {"labels": torch.tensor([A])})
    out = metric.compute()
    assert out["exact_acc"] == 1.0 and out["sample_acc"] == pytest.approx(0.4) and out["pass_at_n"] == 1.0


def test_token_accuracy_ignores_pad():
    metric = SolveMetrics()
    metric.update(scored([[[2, 3, 5]]], [[False]], [0]), {"labels": torch.tensor([[2, 4, 0]])})
    out = metric.compute()
    assert out["token_acc"] == 0.5 and "coverage" not in out


def test_distinct_solutions_use_canonical_keys_and_conflicts_are_summed():
    metric = SolveMetrics("conflict_edges")
    # Colorings [3, 4, 3] and [4, 3, 4] are one coloring up to color permutation: same canonical key.
    samples = torch.tensor([[[3, 4, 3], [4, 3, 4], [3, 3, 4]]])
    keys = torch.tensor([[[3, 4, 3], [3, 4, 3], [3, 3, 4]]])
    is_solution = torch.tensor([[True, True, True]])
    batch = {"labels": samples[:, 0], "num_solutions": torch.tensor([4])}
    metric.update(scored(samples, is_solution, [0], keys, violations=[[2, 0, 1]]), batch)
    metric.update(scored(samples, is_solution, [1], keys, violations=[[2, 0, 1]]), batch)
    out = metric.compute()
    assert out["distinct_solutions"] == 2.0 and out["coverage"] == pytest.approx(0.5)
    # The chosen samples have 2 and 0 conflicts; one sample has (2 + 0 + 1) / 3 = 1 on average, per input.
    assert out["conflict_edges"] == 2.0 and out["conflict_edges_per_input"] == 1.0
    assert out["sample_conflict_edges"] == pytest.approx(2.0) and out["sample_conflict_edges_per_input"] == pytest.approx(1.0)


def test_vote_on_canonical_forms_keeps_a_coloring_in_many_labellings_together():
    # One valid 3-coloring of a 4-node path written in 5 colour labellings, and one invalid output twice.
    valid = [[3, 4, 3, 4], [4, 3, 4, 3], [3, 5, 3, 5], [5, 3, 5, 3], [4, 5, 4, 5]]
    invalid = [3, 3, 3, 3]
    preds = torch.tensor([[*valid, invalid, invalid]])  # (1, 7, 4)
    value, halt = torch.zeros(1, 7), torch.zeros(1, 7)
    assert select(preds, "vote", value, halt).output.tolist() == [invalid]  # raw tokens: 2 votes beat 1 each
    is_solution = torch.tensor([[True] * 5 + [False] * 2])
    s = scored(preds, is_solution, [0], keys=canonical_output(preds, 3))
    chosen = s.reselect("vote")
    assert chosen.chosen_ok.item() and chosen.score.item() == pytest.approx(5 / 7)
    assert chosen.distinct_solutions.item() == 1
