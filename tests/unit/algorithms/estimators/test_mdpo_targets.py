"""MDPO's training-time masking: the trace estimator with `targets: masked` scores every action
each replayed inference state still masks, weighted 1/t and averaged over the row's steps."""

import math

import pytest
import torch

import dllm
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.errors import ConfigError
from tests.unit.algorithms.estimators.test_trace import steps_rollout

TOKEN = 3  # every completion token; the prompt is 4 zeros, the mask id 2


def hidden_count_logits(input_ids):
    """Logit n of token 3 at every position, n = the row's masked positions; 0 for the others (V = 4)."""
    logits = torch.zeros(*input_ids.shape, 4)
    logits[..., TOKEN] = (input_ids == 2).sum(1, keepdim=True).float()
    return logits


def log_p(n):
    """log p(token 3) with n positions masked: n - log(3 + e^n)."""
    return n - math.log(3 + math.exp(n))


def test_every_masked_action_is_scored_in_every_state_weighted_one_over_t(scripted_model):
    # Steps 0, 2, 1: rounds 0, 2, 1 (K = 3 states). State 0 masks all 3 positions (1/t = 3/3),
    # state 1 positions 1 and 2 (3/2), state 2 position 1 (3/1); each term is divided by K = 3.
    rollout = steps_rollout([[0, 2, 1]], None)
    rollout.sequences[:, 4:] = TOKEN
    model = scripted_model(hidden_count_logits)
    log_probs, covered = TraceEstimator(targets="masked").log_probs(model, rollout, {})
    by_hand = [
        log_p(3) / 3,                          # -0.04640: masked only in state 0
        log_p(3) / 3 + log_p(2) / 2 + log_p(1),        # -0.96045: masked in all three
        log_p(3) / 3 + log_p(2) / 2,               # -0.21678: masked in states 0 and 1
    ]  # fmt: skip
    assert by_hand == pytest.approx([-0.046402, -0.960447, -0.216779], abs=1e-5)
    assert torch.allclose(log_probs, torch.tensor([by_hand]), atol=1e-5)
    assert covered.all() and len(model.calls) == 3  # one forward per state, held as one part
    # TraceRL's targets on the same rollout: each token once, in the state that revealed it
    revealed, _ = TraceEstimator().log_probs(model, rollout, {})
    assert torch.allclose(revealed, torch.tensor([[log_p(3), log_p(1), log_p(2)]]), atol=1e-5)


def test_a_token_after_eos_is_masked_context_but_no_action(scripted_model):
    # EOS at position 1: position 2 (step 1) is no action, so the merged steps are those that
    # revealed actions, 0 and 2 (K = 2), and position 2 shows in state 1: it masks position 1
    # only (1/t = 3/1). State 0 masks all three (3/3), position 2 included.
    rollout = steps_rollout([[0, 2, 1]], None, scored=[[True, True, False]])
    rollout.sequences[:, 4:] = TOKEN
    log_probs, _ = TraceEstimator(targets="masked").log_probs(scripted_model(hidden_count_logits), rollout, {})
    by_hand = [log_p(3) / 2, log_p(3) / 2 + 3 * log_p(1) / 2, 0.0]
    assert by_hand == pytest.approx([-0.069603, -1.185110, 0.0], abs=1e-5)
    assert torch.allclose(log_probs, torch.tensor([by_hand]), atol=1e-5)


def test_block_models_take_one_over_t_per_block(scripted_model):
    # Blocks of 2: (0 1) revealed at steps 1, 0 and (2 3) at steps 3, 2: rounds 1 0 1 0, K = 2.
    # State 0 masks both blocks whole (1/t = 2/2 each), state 1 one position of each (2/1).
    rollout = steps_rollout([[1, 0, 3, 2]], 2)
    rollout.sequences[:, 4:] = TOKEN
    states = list(TraceEstimator(targets="masked")._states(rollout))
    assert [actions.tolist() for _, actions, _ in states] == [[[True] * 4], [[True, False, True, False]]]
    assert states[0][2].tolist() == [[0.5] * 4] and states[1][2][0, [0, 2]].tolist() == [1.0, 1.0]


def test_the_mdpo_preset_and_bad_targets():
    algorithm = dllm.build("algorithm", "mdpo")
    assert algorithm.estimator.targets == "masked" and algorithm.objective.beta == 0.02
    with pytest.raises(ConfigError, match="trace.targets must be revealed .* or masked"):
        TraceEstimator(targets="all")
