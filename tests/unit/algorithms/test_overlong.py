"""DAPO's soft overlong punishment: the penalty by hand, and bad settings refused at config time."""

import pytest
import torch

from dllm.algorithms.overlong import OverlongShaping
from dllm.config import compose
from dllm.errors import ConfigError
from dllm.run import plan


def test_the_penalty_by_hand():
    # L = 20, buffer 5: no penalty up to 15 tokens, then -(|y| - 15) / 5, -1 at the cap.
    lengths = torch.tensor([10, 15, 16, 18, 20])
    assert OverlongShaping(5).penalty(lengths, 20).tolist() == pytest.approx([0.0, 0.0, -0.2, -0.6, -1.0])
    assert OverlongShaping(5, 0.5).penalty(lengths, 20).tolist() == pytest.approx([0.0, 0.0, -0.1, -0.3, -0.5])
    assert OverlongShaping(0.25).penalty(lengths, 20).tolist() == pytest.approx([0.0, 0.0, -0.2, -0.6, -1.0])
    # DAPO's share, 0.2 (4096 of 20480), of 8 tokens: 1.6, rounded to 2; 7 tokens is 1 into the buffer.
    assert OverlongShaping(0.2).tokens(8) == 2 and OverlongShaping(0.2).tokens(20480) == 4096
    assert OverlongShaping(0.2).penalty(torch.tensor([3, 6, 7, 8]), 8).tolist() == pytest.approx([0, 0, -0.5, -1])
    assert OverlongShaping(4, 0.0).penalty(torch.tensor([8]), 8).tolist() == [0.0]  # factor 0: no penalty
    # a buffer as long as the generation: every token costs factor / L
    assert OverlongShaping(8).penalty(torch.tensor([0, 2, 8]), 8).tolist() == pytest.approx([0.0, -0.25, -1.0])


@pytest.mark.parametrize(
    "buffer, factor, message",
    [
        (0, 1.0, r"overlong_buffer=0: give whole tokens \(>= 1\) or a share"),
        (-3, 1.0, r"overlong_buffer=-3"),
        (1.5, 1.0, r"overlong_buffer=1.5"),
        (True, 1.0, r"overlong_buffer=True"),
        (4, -0.5, r"overlong_penalty_factor=-0.5 must be >= 0"),
    ],
)
def test_bad_settings_are_refused(buffer, factor, message):
    with pytest.raises(ConfigError, match=message):
        OverlongShaping(buffer, factor)


def test_a_buffer_longer_than_the_generation_is_refused_when_the_run_is_planned():
    quick = ["experiment=addition_tiny", "algorithm=dapo", "trainer.max_steps=2"]  # addition: 8 tokens
    with pytest.raises(ConfigError) as caught:
        plan(compose([*quick, "algorithm.overlong_buffer=9"]))
    message = str(caught.value)
    assert "algorithm.overlong_buffer (9 tokens) is longer than the generation length (8)" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match="longer than the generation length"):  # a schedule: every length
        plan(compose([*quick, "algorithm.overlong_buffer=12", "algorithm.gen_length={0: 16, 10: 8}"]))
    with pytest.raises(ConfigError, match=r"overlong_penalty_factor=-1.0 must be >= 0"):
        plan(compose([*quick, "algorithm.overlong_penalty_factor=-1.0"]))
    plan(compose([*quick, "algorithm.overlong_buffer=8"]))  # as long as the generation: allowed
