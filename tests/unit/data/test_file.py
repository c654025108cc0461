import json
import logging
import random

import pytest

import dllm
from dllm.data.file import FileTask
from dllm.errors import ConfigError
from dllm.rewards.countdown import CountdownReward
from dllm.rewards.sudoku import SudokuReward

SAMPLES = "pkg://dllm.data.samples/"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def every_example(task):
    return [task.example(row) for row in task._train_rows] + task.eval_examples()


# sample file -> (layout, the first record's example fields, its prompt's start)
SAMPLE_CASES = {
    "plain.jsonl": ("plain", {"answer": "0103"}, "010+093="),
    "gsm8k.jsonl": ("gsm8k", {"answer": "7"}, "A baker makes 24 muffins"),
    "math.jsonl": ("math", {"answer": "5"}, "What is the value of $2^5 - 3^3$?"),
    "tracerl_math.json": ("tracerl_math", {"answer": "50"}, "What is $7 \\times 8 - 6$?"),
    "tracerl_code.json": (
        "tracerl_code",
        {"tests": ["assert add(1, 2) == 3", "assert add(-4, 4) == 0", "assert add(10, 5) == 15"], "time_limit": 1.0},
        "Write a function add(a, b)",
    ),
    "countdown.jsonl": ("countdown", {"numbers": [30, 38, 60], "target": 68}, "Using the numbers [30, 38, 60]"),
    "countdown_test.jsonl": ("countdown", {"numbers": [94, 97, 27], "target": 30}, "Using the numbers [94, 97, 27]"),
    "sudoku.csv": ("sudoku", {"puzzle": "0401020001030310", "solution": "3421123421434312"}, "Solve this 4x4 sudoku"),
}


@pytest.mark.parametrize("name", SAMPLE_CASES)
def test_every_shipped_sample_loads_in_its_layout(name):
    layout, fields, prompt = SAMPLE_CASES[name]
    task = FileTask(eval_file=SAMPLES + name)  # every record is an evaluation record, in file order
    assert task.layout.name == layout and len(task.eval_examples()) == 12 and task.skipped_lines == 0
    first = task.eval_examples()[0]
    assert first.fields == fields and first.prompt.startswith(prompt)
    assert all(e.fields.keys() == fields.keys() for e in task.eval_examples())


def test_the_sample_fields_are_what_the_rewards_score():
    countdown = FileTask(eval_file=SAMPLES + "countdown.jsonl").eval_examples()[0]
    assert CountdownReward()(["p"], ["38+60-30"], **{k: [v] for k, v in countdown.fields.items()}) == [1.0]
    sudoku = FileTask(eval_file=SAMPLES + "sudoku.csv").eval_examples()[0]
    assert SudokuReward()(["p"], [sudoku.response], **{k: [v] for k, v in sudoku.fields.items()}) == [1.0]


def test_stdio_records_of_tracerl_code_become_input_output_cases():
    task = FileTask(eval_file=SAMPLES + "tracerl_code.json")
    stdio = task.eval_examples()[6]
    assert stdio.fields == {
        "tests": [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -3\n", "output": "7\n"}],
        "time_limit": 1.0,
    }
    assert "input()" in stdio.prompt


@pytest.mark.parametrize(
    "preset", ["gsm8k_file", "math_file", "tracerl_math_file", "tracerl_code_file", "countdown_file", "sudoku_file"]
)
def test_the_presets_read_their_sample(preset):
    task = dllm.build("task", preset)
    assert isinstance(task, FileTask) and task.layout.name == preset.removesuffix("_file")
    assert task.eval_examples() and task.num_train > 0 and task.gen_length >= 128


def test_the_held_out_split_is_fixed_and_disjoint_from_training():
    task = FileTask(train_file=SAMPLES + "plain.jsonl")  # 10% by a hash of each record
    held_out = {e.prompt for e in task.eval_examples()}
    assert held_out == {"602+637=", "972+527="} and task.num_train == 10
    drawn = {e.prompt for e in task.sample(random.Random(0), 200)}
    assert len(drawn) == 10 and not drawn & held_out
    assert [e.prompt for e in FileTask(train_file=SAMPLES + "plain.jsonl").eval_examples()] == sorted(held_out)


def test_an_eval_file_is_the_held_out_split_and_num_eval_keeps_the_first():
    task = FileTask(train_file=SAMPLES + "countdown.jsonl", eval_file=SAMPLES + "countdown_test.jsonl", num_eval=3)
    assert task.num_train == 12 and len(task.eval_examples()) == 3
    assert task.eval_examples()[0].fields == {"numbers": [94, 97, 27], "target": 30}


def test_an_eval_only_task_refuses_to_train():
    task = FileTask(eval_file=SAMPLES + "gsm8k.jsonl")
    with pytest.raises(ConfigError, match="no training records .* set task.train_file"):
        task.train_example(random.Random(0))


def test_fields_map_roles_to_other_record_fields(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"q": "What is 2+2?", "final": "4", "level": 3}] * 2)
    task = FileTask(
        eval_file=path,
        layout="tracerl_math",
        fields={"question": "q", "answer": "final"},
        extra_fields={"difficulty": "level"},
        prompt_template="Q: {question} (level {level})",
    )
    example = task.eval_examples()[0]
    assert example.prompt == "Q: What is 2+2? (level 3)"
    assert example.fields == {"answer": "4", "difficulty": 3} and example.response == "4"


def test_plain_passes_every_other_field_to_rewards(tmp_path):
    path = write_jsonl(
        tmp_path / "p.jsonl", [{"prompt": "x", "answer": "1", "tests": ["assert True"]}, {"prompt": "y", "answer": "2"}]
    )
    examples = FileTask(eval_file=path).eval_examples()
    assert examples[0].fields == {"answer": "1", "tests": ["assert True"]}
    assert examples[1].fields == {"answer": "2", "tests": None}  # every example has the same fields
    assert examples[0].response == "1"  # no `response` field: the answer is the SFT target


def test_a_missing_field_names_the_field_the_file_and_the_option(tmp_path):
    path = write_jsonl(tmp_path / "t.json", [{"question": "q", "ground_truth_answer": None}, {"question": "q2"}])
    with pytest.raises(ConfigError) as error:
        FileTask(eval_file=path, layout="tracerl_math")
    message = str(error.value)
    assert f"{tmp_path / 't.json'}: record 1 has no field 'ground_truth_answer'" in message
    assert "(the 'answer' of layout 'tracerl_math'); its fields: question" in message
    assert "task.fields.answer=FIELD_NAME" in message


def test_a_mapped_field_that_records_lack_is_an_error_even_for_an_optional_role(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"question": "q", "test_list": ["assert True"], "limit": 2}])
    with pytest.raises(ConfigError, match=r"c.jsonl:1 has no field 'tl' \(the 'time_limit' .* task.fields.time_limit="):
        FileTask(eval_file=path, fields={"time_limit": "tl"})
    assert FileTask(eval_file=path, fields={"time_limit": "limit"}).eval_examples()[0].fields["time_limit"] == 2.0


def test_a_missing_test_list_of_a_function_record_is_named(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"question": "q", "test_method": "function", "test_input": ["1"]}])
    with pytest.raises(ConfigError, match=r"c.jsonl:1 has no field 'test_list' .* task.fields.test_list=FIELD_NAME"):
        FileTask(eval_file=path, layout="tracerl_code")


def test_unknown_roles_layouts_and_placeholders_are_refused_at_construction(tmp_path):
    path = SAMPLES + "gsm8k.jsonl"
    with pytest.raises(ConfigError, match=r"task.fields.anwser — did you mean 'answer'.*task.extra_fields"):
        FileTask(eval_file=path, fields={"anwser": "x"})
    with pytest.raises(ConfigError, match=r"task.layout='gsm8' — did you mean 'gsm8k'"):
        FileTask(eval_file=path, layout="gsm8")
    with pytest.raises(ConfigError, match=r"uses \{problem\}.*fields: answer, question"):
        FileTask(eval_file=path, prompt_template="{problem}")
    with pytest.raises(ConfigError, match="needs task.train_file, task.eval_file or both"):
        FileTask()


def test_malformed_lines_are_skipped_with_a_count(tmp_path, caplog):
    path = tmp_path / "train.jsonl"
    path.write_text('{"prompt": "a", "answer": "1"}\nnot json\n{"prompt": "b", "answer": "2"}\n')
    with caplog.at_level(logging.WARNING):
        task = FileTask(eval_file=str(path))
    assert task.skipped_lines == 1 and [e.prompt for e in task.eval_examples()] == ["a", "b"]
    assert f"{path}:2: invalid JSON" in caplog.text


@pytest.mark.parametrize("layout", ["tracerl_math", "gsm8k", "math", "plain"])
def test_a_null_or_missing_answer_is_skipped_like_a_malformed_line(tmp_path, caplog, layout):
    """Never trained as an empty target, never scored against `None`: reported FILE:LINE and skipped."""
    question, answer = {"tracerl_math": ("question", "ground_truth_answer"), "gsm8k": ("question", "answer"),
                        "math": ("problem", "answer"), "plain": ("prompt", "answer")}[layout]  # fmt: skip
    good = "#### 4" if layout == "gsm8k" else "4"
    path = tmp_path / "d.jsonl"
    lines = [{question: "a", answer: good}, {question: "b", answer: None}, {question: "c"}]
    lines.append({question: "d", answer: good})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    with caplog.at_level(logging.WARNING):
        task = FileTask(eval_file=str(path), layout=layout)
    examples = task.eval_examples()
    assert [e.prompt.split("\n")[0] for e in examples] == ["a", "d"] and task.skipped_lines == 2
    assert [e.fields["answer"] for e in examples] == ["4", "4"] and all(e.response for e in examples)
    assert f"{path}:2 has no" in caplog.text and f"{path}:3 has no" in caplog.text


def test_a_nan_answer_from_a_table_is_missing(tmp_path):
    import pandas as pd

    path = tmp_path / "d.parquet"
    pd.DataFrame({"question": ["a", "b"], "ground_truth_answer": [4.0, float("nan")]}).to_parquet(path)
    task = FileTask(eval_file=str(path), layout="tracerl_math")
    assert [e.fields["answer"] for e in task.eval_examples()] == ["4"] and task.skipped_lines == 1


def test_a_huge_line_is_a_clear_error_before_any_tokenizer_sees_it(tmp_path, monkeypatch):
    import dllm.data.file as file_module

    monkeypatch.setattr(file_module, "MAX_FIELD_CHARS", 1_000_000)
    path = tmp_path / "huge.jsonl"
    huge = "x" * 30_000_000  # 30 MB on one line
    write_jsonl(path, [{"prompt": "a", "answer": "1"}, {"prompt": huge, "answer": "2"}])
    with pytest.raises(ConfigError) as error:
        FileTask(eval_file=str(path))
    message = str(error.value)
    assert f"{path}:2: field 'prompt' holds 30,000,000 characters, more than the 1,000,000" in message
    assert "\n" not in message
