import math

import torch

from dllm.samplers.policies import (
    dynamic_selection,
    entropy_bounded_selection,
    factor_selection,
    sequential_selection,
    threshold_selection,
)

T, F = True, False


def test_sequential_takes_the_leftmost_masked():
    masked = torch.tensor([[F, T, T, T], [T, F, T, T]])
    assert sequential_selection(masked, torch.tensor([2, 1])).tolist() == [[F, T, T, F], [T, F, F, F]]


def test_dynamic_takes_all_above_the_threshold_or_the_quota():
    confidence = torch.tensor([[0.9, 0.95, 0.2, 0.97], [0.9, 0.1, 0.2, 0.3]])
    masked = torch.ones(2, 4, dtype=torch.bool)
    # row 0: three above 0.85 >= quota 2 -> all three; row 1: one above < quota 2 -> top 2
    chosen = dynamic_selection(confidence, masked, torch.tensor([2, 2]), 0.85)
    assert chosen.tolist() == [[T, T, F, T], [T, F, F, T]]


def test_entropy_bounded_fills_the_budget_with_the_lowest_entropies():
    probs = torch.tensor([[[1.0, 0.0], [0.5, 0.5], [0.9, 0.1]]])
    masked = torch.ones(1, 3, dtype=torch.bool)
    h = [0.0, math.log(2), -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))]
    assert entropy_bounded_selection(probs, masked, h[0] + h[2] + 1e-3).tolist() == [[T, F, T]]
    assert entropy_bounded_selection(probs, masked, 1e-9).tolist() == [[T, F, F]]  # at least one


def test_threshold_keeps_the_top_token_and_everything_above():
    confidence = torch.tensor([[0.95, 0.2, 0.91, 0.5], [0.3, 0.4, 0.1, 0.2]], dtype=torch.float64)
    masked = torch.tensor([[T, T, T, F], [T, T, T, T]])
    assert threshold_selection(confidence, masked, 0.9).tolist() == [[T, F, T, F], [F, T, F, F]]


def test_factor_rule_by_hand():
    # k-th most confident must reach 1 - factor / (k + 1): factor 1 -> 0.5, 0.667, 0.75, 0.8
    confidence = torch.tensor([[0.9, 0.7, 0.72, 0.1], [0.6, 0.55, 0.3, 0.2]], dtype=torch.float64)
    masked = torch.ones(2, 4, dtype=torch.bool)
    # row 0 sorted .9 .72 .7 .1: .72 >= .667 yes, .7 >= .75 no -> 2; row 1: .55 >= .667 no -> 1
    assert factor_selection(confidence, masked, 1.0).tolist() == [[T, F, T, F], [T, F, F, F]]
