"""The preference task: pairs from JSON Lines, a held-out split, and bad lines refused one by one."""

import json
import random

import pytest

import dllm
from dllm.data.preference import PreferencePair, PreferenceTask
from dllm.errors import ConfigError


def write(path, lines):
    path.write_text("".join(line if isinstance(line, str) else json.dumps(line) for line in lines))
    return str(path)


PAIR = {"prompt": "1+2=", "chosen": "3", "rejected": "4", "answer": "3"}


def test_the_shipped_pairs_prefer_the_correct_sum():
    task = dllm.build("task", "preference")
    assert (len(task.train_pairs), len(task.eval_pairs)) == (256, 32)
    for pair in task.train_pairs + task.eval_pairs:
        a, b = pair.prompt.rstrip("=").split("+")
        assert pair.chosen == str(int(a) + int(b)) == pair.fields["answer"] != pair.rejected
    train = {p.prompt for p in task.train_pairs}
    assert not train & {p.prompt for p in task.eval_pairs}  # the addition task's held-out split: no overlap
    addition = dllm.build("task", "addition")
    assert not any(addition.is_heldout(*map(int, p.rstrip("=").split("+"))) for p in train)


def test_a_pair_is_an_example_of_its_chosen_response_and_draws_use_the_rng(tmp_path):
    lines = [json.dumps({**PAIR, "prompt": f"{i}+2=", "truncated": True}) + "\n" for i in range(5)]
    path = write(tmp_path / "pairs.jsonl", lines)
    task = PreferenceTask(train_file=path, eval_file=path, gen_length=4)
    assert task.sample_pairs(random.Random(7), 3) == task.sample_pairs(random.Random(7), 3)
    assert task.train_example(random.Random(0)).response == "3"
    assert task.eval_examples()[0].fields == {"answer": "3"}  # not `truncated`, a reward call's own argument
    assert task.eval_pairs[0] == PreferencePair("0+2=", "3", "4", {"answer": "3"})


def test_without_an_eval_file_a_fixed_share_is_held_out(tmp_path):
    lines = [json.dumps({**PAIR, "prompt": f"{i}+2="}) + "\n" for i in range(100)]
    task = PreferenceTask(train_file=write(tmp_path / "p.jsonl", lines), eval_file=None, heldout_percent=20)
    held_out = {p.prompt for p in task.eval_pairs}
    assert 8 <= len(held_out) <= 35 and not held_out & {p.prompt for p in task.train_pairs}
    again = PreferenceTask(train_file=str(tmp_path / "p.jsonl"), eval_file=None, heldout_percent=20)
    assert {p.prompt for p in again.eval_pairs} == held_out


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            '{"prompt": "1+2=", "chosen": "3"\n',
            r"p\.jsonl:2: invalid JSON .*: every line of a preference file must "
            r"be one JSON object with prompt, chosen, rejected; fix or remove it",
        ),
        (
            {"prompt": "1+2=", "chosen": "3"},
            r"p\.jsonl:2 has no field 'rejected' \(its fields: chosen, prompt\); each "
            r"line needs the strings prompt, chosen, rejected: add it, or rename",
        ),
        ({**PAIR, "chosen": 3}, r"p\.jsonl:2 has a non-string \(int\) value in 'chosen'"),
        ({**PAIR, "rejected": ""}, r"p\.jsonl:2 has an empty 'rejected'"),
        ({**PAIR, "rejected": "3"}, r"p\.jsonl:2: chosen and rejected are the same text"),
    ],
)
def test_a_malformed_line_is_refused_with_its_line_number_and_the_fix(bad, message, tmp_path):
    lines = [json.dumps(PAIR) + "\n", bad if isinstance(bad, str) else json.dumps(bad) + "\n", json.dumps(PAIR) + "\n"]
    with pytest.raises(ConfigError, match=message) as error:
        PreferenceTask(train_file=write(tmp_path / "p.jsonl", lines), eval_file=None)
    assert "\n" not in str(error.value)


def test_the_task_needs_a_file():
    with pytest.raises(ConfigError, match="the preference task needs task.train_file, task.eval_file or both"):
        PreferenceTask(train_file=None, eval_file=None)
