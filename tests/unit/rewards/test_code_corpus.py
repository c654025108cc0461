"""The `code` reward on the honest corpus: correct programs, written in habits real models and
datasets use, must score exactly 1.0 under the shipped defaults (issue 14, item 4: no false
negatives). The corpus (tests/fixtures/code_corpus/honest.json, see its README) holds MBPP-style
assert lists, HumanEval-style `check(candidate)` tests, stdio cases and reference solutions to
the shipped samples; each record was checked correct in plain Python, so a failure here is the
reward's."""

import json
import sys
from pathlib import Path

import pytest

import dllm
from tests.unit.rewards.code_corpus import load, score_records

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs Linux")

SAMPLES = Path(dllm.__file__).parent / "data" / "samples" / "tracerl_code.json"


def test_the_honest_corpus_scores_one_under_shipped_defaults():
    records = load("honest")
    reward = dllm.build("reward", "code")
    try:
        scores = score_records(reward, records)
    finally:
        reward.close()
    failed = {r["id"]: round(s, 3) for r, s in zip(records, scores) if s != 1.0}
    assert not failed, f"{len(failed)} of {len(records)} honest programs scored below 1.0: {failed}"


def test_the_corpus_covers_every_shipped_code_sample():
    """Each shipped sample has a reference solution in the corpus, with the sample's own tests."""
    by_id = {r["id"]: r for r in load("honest")}
    for i, sample in enumerate(json.loads(SAMPLES.read_text())):
        if sample.get("test_method", "function") == "function":
            tests = sample["test_list"]
        else:
            tests = [{"input": a, "output": b} for a, b in zip(sample["test_input"], sample["test_output"])]
        assert by_id[f"sample-{i}"]["tests"] == tests


def test_the_corpus_is_well_formed():
    records = load("honest")
    kinds = [r["kind"] for r in records]
    assert len({r["id"] for r in records}) == len(records)
    assert kinds.count("function") >= 60 and kinds.count("humaneval") >= 10 and kinds.count("stdio") >= 8
    for r in records:
        assert r["program"].strip() and r["tests"], r["id"]
