import pytest
import torch

from dllm.algorithms.value import clipped_value_loss, decoding_steps, dense_ranks, step_gae, step_token_rewards


def test_step_gae_on_a_three_step_example_by_hand():
    # one row, 4 tokens over 3 decoding steps: tokens 0, 1 at step 0; token 2 at step 1; token 3 at step 2
    steps = torch.tensor([[0, 0, 1, 2]])
    scored = torch.ones(1, 4, dtype=torch.bool)
    values = torch.tensor([[0.2, 0.4, 0.5, 0.8]])
    rewards = step_token_rewards(steps, scored, torch.tensor([1.0]))
    assert rewards.tolist() == [[0.0, 0.0, 0.0, 1.0]]  # the outcome sits on the last step
    gamma, lam = 0.9, 0.8
    # step means: r* = (0, 0, 1), V* = (0.3, 0.5, 0.8)
    # A*_2 = 1 - 0.8 = 0.2; A*_1 = 0 - 0.5 + 0.9 * 0.8 + 0.72 * 0.2 = 0.364;
    # A*_0 = 0 - 0.3 + 0.9 * 0.5 + 0.72 * 0.364 = 0.41208; R*_2 = 1, R*_1 = 0.9, R*_0 = 0.81
    # tokens: A_j = (r_j - V_j) + gamma V*_{t+1} + gamma lam A*_{t+1}
    a0 = -0.2 + 0.9 * 0.5 + 0.72 * 0.364
    a1 = -0.4 + 0.9 * 0.5 + 0.72 * 0.364
    a2 = -0.5 + 0.9 * 0.8 + 0.72 * 0.2
    a3 = 1 - 0.8
    advantages, returns = step_gae(steps, rewards, values, scored, gamma, lam)
    assert advantages[0].tolist() == pytest.approx([a0, a1, a2, a3])
    assert returns[0].tolist() == pytest.approx([0.81, 0.81, 0.9, 1.0])


def test_with_gamma_and_lambda_one_the_advantage_is_the_return_minus_the_value():
    steps = torch.tensor([[0, 1, 1, 2], [0, 0, 1, 1]])
    scored = torch.tensor([[True, True, True, True], [True, True, True, False]])  # row 1: one token past EOS
    values = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 9.0]])
    rewards = step_token_rewards(steps, scored, torch.tensor([2.0, -1.0]))
    advantages, returns = step_gae(steps, rewards, values, scored, 1.0, 1.0)
    assert returns.tolist() == [[2.0] * 4, [-1.0, -1.0, -1.0, 0.0]]
    assert advantages.flatten().tolist() == pytest.approx([1.9, 1.8, 1.7, 1.6, -1.5, -1.6, -1.7, 0.0])


def test_dense_ranks():
    assert dense_ranks(torch.tensor([[5, 2, 5, 9], [0, 0, 0, 1]])).tolist() == [[1, 0, 1, 2], [0, 0, 0, 1]]


def test_decoding_steps_order_blocks_then_rounds():
    rounds = torch.tensor([[1, 0, 0, 0, 2, 1]])  # block size 2: blocks (1, 0), (0, 0), (2, 1)
    scored = torch.ones_like(rounds, dtype=torch.bool)
    assert decoding_steps(rounds, torch.tensor([[0, 0, 1, 1, 2, 2]]), scored).tolist() == [[1, 0, 2, 2, 4, 3]]
    assert decoding_steps(rounds, torch.zeros(1, 6, dtype=torch.long), scored).tolist() == [[1, 0, 0, 0, 2, 1]]
    # a row whose prompt ends inside a block: its first block holds one completion token
    assert decoding_steps(rounds, torch.tensor([[0, 1, 1, 2, 2, 3]]), scored).tolist() == [[0, 1, 1, 2, 3, 4]]


def test_decoding_steps_count_only_the_steps_of_scored_tokens():
    # EOS at position 1; after it, tokens of rounds 1 and 3 (revealed while other rows decoded
    # on) and -1 (before every action): only rounds 0 and 2 are steps of the judged trajectory
    rounds = torch.tensor([[2, 0, 1, 3, -1]])
    scored = torch.tensor([[True, True, False, False, False]])
    full_attention = torch.zeros_like(rounds)
    assert decoding_steps(rounds, full_attention, scored)[scored].tolist() == [1, 0]
    advantages, _ = step_gae(decoding_steps(rounds, full_attention, scored), torch.tensor([[1.0, 0.0, 0, 0, 0]]),
                             torch.tensor([[0.5, 0.25, 0, 0, 0]]), scored, 0.5, 1.0)  # fmt: skip
    # two steps, no empty one between: A_1 = 1 - 0.5; A_0 = 0 - 0.25 + 0.5 * 0.5 + 0.5 * 0.5
    assert advantages.tolist() == [[0.5, 0.25, 0.0, 0.0, 0.0]]


def test_clipped_value_loss_by_hand():
    values, old, returns = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), torch.tensor([0.0, 1.0])
    # token 0: max((1-0)^2, (0.2-0)^2)/2 = 0.5; token 1: max((0-1)^2, (0-1)^2)/2 = 0.5
    assert clipped_value_loss(values, old, returns, 0.2).tolist() == pytest.approx([0.5, 0.5])
    # moving towards the target beyond the clip keeps the larger (clipped) error
    assert clipped_value_loss(torch.tensor([0.9]), torch.tensor([0.0]), torch.tensor([1.0]), 0.2).item() == (
        pytest.approx(0.5 * 0.8**2)
    )


def test_process_rewards_land_on_the_steps_that_revealed_their_tokens():
    # tokens 0..4 revealed at steps (2, 0, 1, 1, 3); values at token 1 (+0.5, step 0) and
    # token 3 (-0.25, step 1, shared with token 2); outcome 1.0 on the last step (3)
    steps = torch.tensor([[2, 0, 1, 1, 3]])
    scored = torch.ones(1, 5, dtype=torch.bool)
    process = torch.tensor([[0.0, 0.5, 0.0, -0.25, 0.0]])
    rewards = step_token_rewards(steps, scored, torch.tensor([1.0]), process)
    # step rewards r* = (0.5, -0.25, 0, 1): every token carries its step's reward
    assert rewards.tolist() == [[0.0, 0.5, -0.25, -0.25, 1.0]]
    values = torch.zeros(1, 5)
    advantages, returns = step_gae(steps, rewards, values, scored, gamma=0.5, lam=1.0)
    # R*_3 = 1, R*_2 = 0 + 0.5 = 0.5, R*_1 = -0.25 + 0.25 = 0, R*_0 = 0.5 + 0 = 0.5; with V = 0, A_j = R_j
    assert returns.tolist() == [[0.5, 0.5, 0.0, 0.0, 1.0]]
    assert advantages.tolist() == returns.tolist()
