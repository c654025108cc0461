"""The shipped lm-eval tasks: their data files are what shipped_tasks.py makes, and lm-eval
loads both from dllm's task folder, offline, with the documents and requests expected."""

import json

import jinja2
import pytest

from dllm.harness import TASKS_DIR
from dllm.harness.tasks_run import check_tasks
from dllm.tokenizer import build_char_tokenizer
from tests.unit.harness.shipped_tasks import (
    GEN_LENGTH,
    NUM_PROMPTS,
    as_completion,
    generative_rows,
    multiple_choice_rows,
)

from .conftest import SHIPPED


def read_jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (TASKS_DIR / name).read_text().splitlines()]


def test_the_shipped_files_are_the_addition_tasks_held_out_prompts():
    assert read_jsonl("addition_gen.jsonl") == generative_rows()
    assert read_jsonl("addition_mc.jsonl") == multiple_choice_rows()
    rows = multiple_choice_rows()
    assert len(rows) == NUM_PROMPTS
    tokenizer = build_char_tokenizer()
    for row, gen in zip(rows, generative_rows()):
        assert row["choices"][row["label"]] == as_completion(gen["answer"])
        assert len(set(row["choices"])) == 4
        for choice in row["choices"]:  # 8 tokens: the sum's digits, then EOS tokens
            ids = tokenizer(choice)["input_ids"]
            assert len(ids) == GEN_LENGTH and ids[len(gen["answer"]) :] == [tokenizer.eos_token_id] * 4
    assert sorted({row["label"] for row in rows}) == [0, 1, 2, 3]


def test_lm_eval_loads_both_tasks_from_local_files(shipped_manager):
    from lm_eval.tasks import get_task_dict

    tasks = get_task_dict(list(SHIPPED), shipped_manager)
    generative, choice = tasks["dllm_addition"], tasks["dllm_addition_mc"]
    docs = list(generative.test_docs())
    assert len(docs) == NUM_PROMPTS and generative.doc_to_text(docs[0]) == "219+021="
    assert generative.doc_to_target(docs[0]) == "0240"
    assert generative.config.generation_kwargs == {"until": [], "max_gen_toks": 8, "do_sample": False}
    first = list(choice.test_docs())[0]
    assert choice.doc_to_choice(first) == [as_completion(s) for s in ("0240", "0239", "0140", "0250")]
    assert choice.doc_to_target(first) == 0
    assert choice.config.target_delimiter == ""  # "219+021=" + "0240", as the task writes it


def test_an_unknown_task_is_refused_by_name(shipped_manager):
    with pytest.raises(Exception, match=r"unknown lm-eval task 'dllm_additon' — did you mean 'dllm_addition'"):
        check_tasks(shipped_manager, ["dllm_addition", "dllm_additon"])


def test_gsm8k_boxed_grades_the_last_boxed_answer_against_the_number_after_the_hashes():
    """The SDAR/TraDo grading, on lm-eval's own filter and metric with the YAML's settings
    (the task itself reads the hub, which tests cannot)."""
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(str(TASKS_DIR / "gsm8k_boxed.yaml"), resolve_func=True)
    regex = config["filter_list"][0]["filter"][0]
    extract = RegexFilter(regex_pattern=regex["regex_pattern"], group_select=regex["group_select"])
    completions = ["a \\boxed{7} then \\boxed{1,234}.", "\\boxed{$1234.}", "it is 1234", "\\boxed{1235}"]
    answers = [row[0] for row in extract.apply([[c] for c in completions], [{}] * len(completions))]
    assert answers == ["1,234", "$1234.", "[invalid]", "1235"]
    metric = config["metric_list"][0]
    answer = "Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 1234"  # a GSM8K answer field
    target = jinja2.Template(config["doc_to_target"]).render(answer=answer)
    assert target == "1234"
    scores = [
        exact_match_hf_evaluate([answer], [target], regexes_to_ignore=metric["regexes_to_ignore"])["exact_match"]
        for answer in answers
    ]
    assert scores == [1.0, 1.0, 0.0, 0.0]
