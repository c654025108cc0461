import random

import pytest

import dllm
from dllm.data.addition import AdditionTask
from dllm.errors import ConfigError


def test_examples_are_correct_sums():
    task = AdditionTask(min_digits=1, max_digits=3)
    for example in task.sample(random.Random(0), 200):
        a, b = example.prompt.rstrip("=").split("+")
        assert example.response == example.fields["answer"] == str(int(a) + int(b))
        assert 1 <= len(a) <= 3 and 1 <= len(b) <= 3


def test_digits_are_respected():
    task = AdditionTask(min_digits=3, max_digits=3)
    operands = [int(x) for e in task.sample(random.Random(1), 100) for x in e.prompt.rstrip("=").split("+")]
    assert min(operands) >= 100 and max(operands) <= 999


def test_heldout_split_is_disjoint_and_fixed():
    task = AdditionTask(num_eval=50)
    evaluation = task.eval_examples()
    assert len({e.prompt for e in evaluation}) == 50
    assert [e.prompt for e in evaluation] == [e.prompt for e in AdditionTask(num_eval=50).eval_examples()]
    train_prompts = {e.prompt for e in task.sample(random.Random(0), 5000)}
    assert not train_prompts & {e.prompt for e in evaluation}


def test_heldout_fraction_matches_heldout_percent():
    task = AdditionTask(heldout_percent=10)
    pairs = [(a, b) for a in range(10, 200) for b in range(10, 200)]
    fraction = sum(task.is_heldout(a, b) for a, b in pairs) / len(pairs)
    assert fraction == pytest.approx(0.10, abs=0.01)


def test_registered_and_bad_settings_refused():
    assert isinstance(dllm.build("task", "addition"), AdditionTask)
    with pytest.raises(ConfigError, match="gen_length"):
        AdditionTask(max_digits=3, gen_length=4)
    with pytest.raises(ConfigError, match="min_digits"):
        AdditionTask(min_digits=3, max_digits=2)
