import random

import pytest

import dllm
from dllm.data.countdown import CountdownTask, longest_expression, render, solve, solve_in_order, split_key
from dllm.errors import ConfigError
from dllm.rewards.countdown import CountdownReward, parse_expression


def parse_prompt(prompt):
    target, numbers = prompt.rstrip("=").split(":")
    return [int(n) for n in numbers.split(",")], int(target)


def test_every_response_is_a_correct_solution_and_the_fields_match_the_prompt():
    task, reward = CountdownTask(), CountdownReward()
    for example in task.sample(random.Random(0), 500) + task.eval_examples():
        numbers, target = parse_prompt(example.prompt)
        assert example.fields == {"numbers": numbers, "target": target}
        assert len(numbers) == 3 and all(1 <= n <= 9 for n in numbers)
        assert reward.score(example.response, numbers, target) == 1.0
        assert len(example.response) < task.gen_length  # room for the EOS


def test_prompt_and_response_format():
    task = CountdownTask()
    example = task.example([3, 5, 7], 22)
    assert (example.prompt, example.response) == ("22:3,5,7=", "3*5+7")


def test_generated_intermediate_results_are_positive_integers():
    task = CountdownTask(num_numbers=4, max_number=12, gen_length=16)
    for example in task.sample(random.Random(1), 300):
        steps = parse_expression(example.response).steps
        assert len(steps) == 3 and all(s.denominator == 1 and s > 0 for s in steps)


def test_render_uses_the_fewest_parentheses_that_keep_the_value():
    assert render(("-", 9, ("-", 7, 5))) == "9-(7-5)"
    assert render(("-", ("-", 9, 7), 5)) == "9-7-5"
    assert render(("+", 9, ("-", 7, 5))) == "9+7-5"
    assert render(("*", ("+", 1, 2), 3)) == "(1+2)*3"
    assert render(("/", 8, ("*", 2, 2))) == "8/(2*2)"
    assert render(("*", 8, ("/", 4, 2))) == "8*4/2"
    assert render(("+", ("*", 3, 5), 7)) == "3*5+7"


def test_solve_prefers_the_given_order_and_left_deep_chains():
    assert render(solve_in_order([3, 5, 7], 22)) == "3*5+7"
    assert render(solve_in_order([1, 2, 3], 6)) == "1+2+3"  # not 1*2*3: + is tried first
    assert render(solve_in_order([7, 5, 3], 22)) == "7+5*3"
    assert solve_in_order([1, 2, 3], 2) is None  # 1 2 3 in this order cannot make 2 (1-2 < 0)
    assert render(solve([1, 2, 3], 2)) == "1+3-2"  # the first other order that can
    assert solve([1, 1, 1], 5) is None
    assert solve([2, 3], 6, operators="+-") is None


def test_operators_restrict_the_generator():
    task = CountdownTask(operators="+-")
    responses = "".join(e.response for e in task.sample(random.Random(2), 300))
    assert set(responses) - set("0123456789") <= set("+-()")


def test_longest_expression_bounds_every_response():
    assert longest_expression(3, 9) == 7  # "(1+2)*3"
    task = CountdownTask(num_numbers=4, max_number=20, gen_length=16)
    limit = longest_expression(4, 20)
    assert max(len(e.response) for e in task.sample(random.Random(3), 500)) <= limit


def test_heldout_split_is_disjoint_fixed_and_order_independent():
    task = CountdownTask(num_eval=50)
    evaluation = task.eval_examples()
    keys = {split_key(e.fields["numbers"], e.fields["target"]) for e in evaluation}
    assert len(keys) == 50  # no two held-out prompts are reorderings of each other
    assert [e.prompt for e in evaluation] == [e.prompt for e in CountdownTask(num_eval=50).eval_examples()]
    assert all(task.is_heldout(e.fields["numbers"], e.fields["target"]) for e in evaluation)
    train = task.sample(random.Random(0), 5000)
    assert not keys & {split_key(e.fields["numbers"], e.fields["target"]) for e in train}
    assert task.is_heldout([3, 5, 7], 22) == task.is_heldout([7, 3, 5], 22)


def test_heldout_split_does_not_depend_on_the_process():
    # The hash is fixed (not Python's salted hash()): these keys are held out at 10% forever.
    assert split_key([7, 3, 5], 22) == "3,5,7>22"
    task = CountdownTask(heldout_percent=10)
    held_out = [t for t in range(1, 100) if task.is_heldout([1, 2, 3], t)]
    assert held_out == [13, 17, 39, 63, 78, 79, 89, 94]


def test_heldout_fraction_matches_heldout_percent():
    task = CountdownTask(heldout_percent=20)
    keys = [([a, b, c], t) for a in range(1, 10) for b in range(a, 10) for c in range(b, 10) for t in range(1, 30)]
    fraction = sum(task.is_heldout(n, t) for n, t in keys) / len(keys)
    assert fraction == pytest.approx(0.20, abs=0.02)


def test_registered_and_bad_settings_refused():
    assert isinstance(dllm.build("task", "countdown"), CountdownTask)
    with pytest.raises(ConfigError, match="gen_length"):
        CountdownTask(gen_length=7)
    with pytest.raises(ConfigError, match="num_numbers"):
        CountdownTask(num_numbers=1)
    with pytest.raises(ConfigError, match="min_number"):
        CountdownTask(min_number=0)
    with pytest.raises(ConfigError, match="operators"):
        CountdownTask(operators="+^")
    with pytest.raises(ConfigError, match="heldout_percent"):
        CountdownTask(heldout_percent=0)


def test_impossible_settings_fail_loudly_instead_of_looping():
    with pytest.raises(ConfigError, match="no training problem"):
        CountdownTask(min_number=5, max_number=5, operators="-", heldout_percent=50, num_eval=1).train_example(
            random.Random(0)
        )
    with pytest.raises(ConfigError, match="num_eval"):
        CountdownTask(min_number=1, max_number=2, num_numbers=2, num_eval=50).eval_examples()
