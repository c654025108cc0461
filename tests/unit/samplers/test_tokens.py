import pytest
import torch

from dllm.samplers.tokens import categorical_sample, filter_top_k_top_p, gumbel_max_sample


def test_top_k_and_top_p_filtering():
    logits = torch.tensor([[[0.0, 1.0, 2.0, 3.0]]]).log_softmax(-1)
    _, probs = categorical_sample(logits, 1.0, top_k=2, top_p=1.0, generator=torch.Generator(), mask_id=0)
    assert (probs[0, 0, :2] == 0).all() and probs[0, 0, 2:].sum().item() == pytest.approx(1.0)
    peaked = torch.tensor([[[0.0, 0.05, 0.15, 0.8]]]).log()
    _, probs = categorical_sample(peaked, 1.0, top_k=0, top_p=0.7, generator=torch.Generator(), mask_id=0)
    assert probs[0, 0].tolist() == [0.0, 0.0, 0.0, 1.0]  # the top token alone crosses 0.7
    kept = filter_top_k_top_p(peaked, top_k=0, top_p=0.9) > -torch.inf
    assert kept[0, 0].tolist() == [False, False, True, True]  # .8 < .9: the crossing token .15 is kept too


def test_greedy_never_picks_the_mask_token():
    peaked = torch.tensor([[[0.0, 0.05, 0.15, 0.8]]]).log()
    tokens, probs = categorical_sample(peaked, 0.0, 0, 1.0, None, mask_id=3)
    assert tokens.item() == 2
    assert probs[0, 0, 2].item() == pytest.approx(0.15 / 0.2)
    assert gumbel_max_sample(peaked, 0.0, None, forbidden_token=3).item() == 2


def test_gumbel_uses_the_given_noise():
    logits = torch.tensor([[0.0, 0.0]])
    # exp(0) / (-log u): the larger u wins, whatever the generator would draw
    assert gumbel_max_sample(logits, 1.0, None, noise=torch.tensor([[0.9, 0.1]], dtype=torch.float64)).item() == 0
    assert gumbel_max_sample(logits, 1.0, None, noise=torch.tensor([[0.1, 0.9]], dtype=torch.float64)).item() == 1


def test_temperature_sampling_follows_the_distribution():
    logits = torch.tensor([0.25, 0.75, 0.0]).log().expand(20000, 3)  # token 2 is the mask
    tokens, _ = categorical_sample(logits, 1.0, 0, 1.0, torch.Generator().manual_seed(0), mask_id=2)
    gumbel = gumbel_max_sample(logits, 1.0, torch.Generator().manual_seed(0), forbidden_token=2)
    assert tokens.float().mean().item() == pytest.approx(0.75, abs=0.01)
    assert gumbel.float().mean().item() == pytest.approx(0.75, abs=0.01)


def test_per_row_generators_sample_each_row_from_its_distribution_alone():
    """With one generator per row, categorical sampling inverts one uniform per position: the
    frequencies follow the probabilities, a token of probability 0 (the mask) never comes, and a
    row samples the same tokens in any batch."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.0, 0.2]])).expand(2, 20000, 4)
    generators = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    tokens, _ = categorical_sample(logits, 1.0, 0, 1.0, generators, mask_id=2)
    frequencies = torch.bincount(tokens.flatten(), minlength=4) / tokens.numel()
    assert torch.allclose(frequencies, torch.tensor([0.5, 0.3, 0.0, 0.2]), atol=0.01)
    assert not (tokens == 2).any()
    alone, _ = categorical_sample(logits[1:], 1.0, 0, 1.0, [torch.Generator().manual_seed(2)], mask_id=2)
    assert torch.equal(alone[0], tokens[1])
