import pytest

import dllm
from dllm.errors import ConfigError


def digit_count_judge(prompts, prefixes):
    """A test double for a judge model: the number of digits written so far."""
    return [float(sum(c.isdigit() for c in prefix)) for prefix in prefixes]


def test_judge_values_are_score_differences_at_every_cut():
    judge = dllm.build("reward", "judge", judge="tests.unit.rewards.test_judge:digit_count_judge", every=2)
    values = judge(["p", "p"], ["1a23x", "7"], token_offsets=[[0, 1, 2, 3, 4], [0]])
    # "1a" -> 1 at token 1; "1a23" -> 3 at token 3 (+2); "1a23x" -> 3 at token 4 (+0); "7" -> 1 at token 0
    assert values == [[(1, 1.0), (3, 2.0), (4, 0.0)], [(0, 1.0)]]
    assert sum(v for _, v in values[0]) == digit_count_judge(["p"], ["1a23x"])[0]  # shaping telescopes


def test_a_judge_path_that_names_nothing_is_refused():
    with pytest.raises(ConfigError, match="does not name a callable"):
        dllm.build("reward", "judge", judge="tests.unit.rewards.test_judge:no_such_judge")
