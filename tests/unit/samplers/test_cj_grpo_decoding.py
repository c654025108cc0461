"""CJ-GRPO's decoding options (arXiv 2509.23924): Ascending Step-Size quotas and EOS Early Rejection."""

import pytest
import torch

from dllm.errors import ConfigError
from dllm.samplers.diffusion import DiffusionSampler
from dllm.samplers.policies import ascending_schedule, eos_rejection_factor
from tests.unit.samplers.test_llada import EOS, MASK, fixed_logits


def test_ascending_quotas_double_and_the_last_step_takes_the_rest():
    # The reference's gen_length 256 in log2(256) = 8 steps: 1 + 2 + ... + 64 = 127, then 129.
    assert ascending_schedule(torch.tensor([256]), 8).tolist() == [[1, 2, 4, 8, 16, 32, 64, 129]]
    assert ascending_schedule(torch.tensor([128]), 7).tolist() == [[1, 2, 4, 8, 16, 32, 65]]
    # A row with fewer masks (a prompt's tail in the block) stops short; an empty one reveals nothing.
    assert ascending_schedule(torch.tensor([5, 0, 7]), 4).tolist() == [[1, 2, 2, 0], [0, 0, 0, 0], [1, 2, 4, 0]]


def test_eos_rejection_factor_rises_with_the_decoding_progress():
    linear = [eos_rejection_factor("linear", i, 4, 0.1, 1.0) for i in range(4)]
    assert linear == pytest.approx([0.1, 0.4, 0.7, 1.0])  # 0.1 + 0.9 i / 3
    ascending = [eos_rejection_factor("ascending", i, 3, 0.01, 1.0) for i in range(3)]
    assert ascending == pytest.approx([0.01 + 0.99 / 8, 0.01 + 0.99 * 3 / 8, 0.01 + 0.99 * 7 / 8])  # share revealed
    assert eos_rejection_factor("linear", 0, 1, 0.01, 1.0) == 1.0  # one step: no suppression


# Position: (token, probability). EOS is the most confident proposal (0.9) from the first step.
PROBS = {0: (6, 0.5), 1: (EOS, 0.9), 2: (4, 0.6), 3: (5, 0.3)}


def test_eos_early_rejection_delays_a_confident_eos(scripted_model):
    prompt = torch.tensor([[9]])
    plain = DiffusionSampler(steps=4).generate(scripted_model(fixed_logits(PROBS, 1)), prompt, gen_length=4)
    assert plain.step_map[0, :3].tolist() == [2, 0, 1]  # EOS first; the row stops once position 0 is revealed
    eoser = DiffusionSampler(steps=4, eos_min_gamma=0.1)
    out = eoser.generate(scripted_model(fixed_logits(PROBS, 1)), prompt, gen_length=4)
    # EOS scores 0.9 x (0.1, 0.4, 0.7): 0.09 < 0.6, then 0.36 < 0.5, then 0.63 > 0.3: revealed third.
    assert out.step_map[0, :3].tolist() == [1, 2, 0]
    assert out.raw_completions[0].tolist() == [6, EOS, 4, MASK]  # stopped at EOS before position 3
    assert out.nfe == 3


def test_ascending_steps_reveal_one_two_four(scripted_model):
    probs = {j: (4 + j % 3, 0.9 - 0.1 * j) for j in range(7)}  # confidence falls left to right
    sampler = DiffusionSampler(steps=3, step_schedule="ascending", stop_at_eos=False)
    out = sampler.generate(scripted_model(fixed_logits(probs, 1)), torch.tensor([[9]]), gen_length=7)
    assert out.step_map[0].tolist() == [0, 1, 1, 2, 2, 2, 2] and out.nfe == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"step_schedule": "cosine"}, "unknown step_schedule 'cosine'"),
        ({"step_schedule": "ascending", "selection": "threshold"}, "ignores; use top_k, dynamic or sequential"),
        ({"eos_min_gamma": 0.1, "score": "margin"}, "needs score confidence"),
        ({"eos_min_gamma": 0.1, "selection": "sequential"}, "needs score confidence"),
        ({"eos_min_gamma": 1.5}, r"need 0 <= eos_min_gamma \(1.5\) <= eos_max_gamma \(1.0\)"),
    ],
)
def test_bad_decoding_options_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DiffusionSampler(**kwargs)
