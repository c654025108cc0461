import math

import pytest
import torch

from dllm.errors import ConfigError
from dllm.samplers.policies import (
    UnmaskingPolicy,
    dynamic_selection,
    entropy_bounded_selection,
    factor_selection,
    position_entropy,
    sequential_selection,
    threshold_selection,
    token_scores,
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
    entropy = position_entropy(probs)
    assert entropy[0].tolist() == pytest.approx(h)
    assert entropy_bounded_selection(entropy, masked, h[0] + h[2] + 1e-3).tolist() == [[T, F, T]]
    assert entropy_bounded_selection(entropy, masked, 1e-9).tolist() == [[T, F, F]]  # at least one


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


# Three masked positions, vocabulary of 4 (token 3 never proposed). Hand-computed:
#   position 0: [.6, .35, .05, 0]  confidence .6  margin .25  entropy 0.8237
#   position 1: [.5, .2, .15, .15] confidence .5  margin .30  entropy 1.2376
#   position 2: [.4, .3, .3, 0]    confidence .4  margin .10  entropy 1.0889
PROBS = torch.tensor([[[0.6, 0.35, 0.05, 0.0], [0.5, 0.2, 0.15, 0.15], [0.4, 0.3, 0.3, 0.0]]])
TOKENS = torch.tensor([[0, 0, 0]])
ALL = torch.ones(1, 3, dtype=torch.bool)


def test_scores_by_hand():
    assert token_scores("confidence", PROBS, TOKENS)[0].tolist() == pytest.approx([0.6, 0.5, 0.4])
    assert token_scores("margin", PROBS, TOKENS)[0].tolist() == pytest.approx([0.25, 0.3, 0.1])
    assert token_scores("entropy", PROBS, TOKENS)[0].tolist() == pytest.approx([-0.8237, -1.2376, -1.0889], abs=1e-4)
    with pytest.raises(ValueError, match="'random' is not read from probabilities"):
        token_scores("random", PROBS, TOKENS)


def choose(policy: UnmaskingPolicy, masked: torch.Tensor, quota: torch.Tensor, **kw) -> list:
    """The policy's choice as a sampler makes it: scores from the distribution, then the selection."""
    scores = policy.position_scores(PROBS, TOKENS) if policy.reads_probabilities else None
    return policy.choose(scores, masked, quota, **kw).tolist()


def test_only_the_policies_that_rank_by_the_distribution_read_it():
    reads = {(s, sel): UnmaskingPolicy(score=s, selection=sel).reads_probabilities
             for s in ("confidence", "random") for sel in ("top_k", "sequential", "entropy_bounded")}  # fmt: skip
    assert reads == {
        ("confidence", "top_k"): True, ("confidence", "sequential"): False, ("confidence", "entropy_bounded"): True,
        ("random", "top_k"): False, ("random", "sequential"): False, ("random", "entropy_bounded"): True,
    }  # fmt: skip


@pytest.mark.parametrize(
    "score, expected",
    [("confidence", [[T, F, F]]), ("margin", [[F, T, F]]), ("entropy", [[T, F, F]]), ("random", [[F, F, T]])],
)
def test_top_k_follows_the_score(score, expected):
    policy = UnmaskingPolicy(score=score, selection="top_k")
    noise = torch.tensor([[0.3, 0.1, 0.9]])
    assert choose(policy, ALL, torch.tensor([1]), noise=noise) == expected


def test_policy_selections_by_hand():
    quota = torch.tensor([2])
    by = lambda **kw: choose(UnmaskingPolicy(**kw), ALL, quota)  # noqa: E731
    assert by(selection="top_k") == [[T, T, F]]
    assert by(selection="threshold", threshold=0.55) == [[T, F, F]]  # the best alone reaches .55
    assert by(selection="threshold", threshold=0.45) == [[T, T, F]]
    assert by(selection="factor", factor=0.9) == [[T, F, F]]  # 2nd (.5) < 1 - .9/3 = .7
    assert by(selection="factor", factor=1.6) == [[T, T, F]]  # .5 >= 1 - 1.6/3 = .467; .4 < 1 - 1.6/4
    assert by(selection="dynamic", threshold=0.45) == [[T, T, F]]  # two above .45 meet the quota
    assert by(selection="sequential") == [[T, T, F]]
    # entropy budget 0.8237 + 1.0889 + tiny: positions 0 and 2
    assert by(selection="entropy_bounded", eb_threshold=1.913) == [[T, F, T]]
    masked = torch.tensor([[F, T, T]])  # a quota above the masked count reveals what is masked
    policy = UnmaskingPolicy(selection="top_k")
    assert choose(policy, masked, torch.tensor([5])) == [[F, T, T]]


def test_bad_policies_are_refused():
    with pytest.raises(ConfigError, match="unknown score 'confidance'"):
        UnmaskingPolicy(score="confidance")
    with pytest.raises(ConfigError, match="unknown selection"):
        UnmaskingPolicy(selection="greedy")
    with pytest.raises(ConfigError, match=r"threshold must be in \(0, 1\]"):
        UnmaskingPolicy(selection="threshold", threshold=0.0)
