import json
from dataclasses import asdict

import pytest
import torch

import dllm
from dllm.data.addition import AdditionTask
from dllm.data.base import Example, Task
from dllm.errors import DllmError
from dllm.evaluation import (
    EvalResult,
    evaluate,
    markdown_table,
    mean_pass_at_k,
    pass_at_k,
    score_completions,
)
from dllm.rewards.exact_match import ExactMatch
from dllm.samplers.base import GenerationOutput, Sampler
from dllm.samplers.llada import LLaDASampler
from dllm.text import decode_completions


def test_decode_cuts_at_eos(tokenizer):
    ids = torch.tensor([tokenizer("12")["input_ids"] + [1, 22, 1], tokenizer("7")["input_ids"] + [1, 1, 1, 1]])
    texts, lengths = decode_completions(tokenizer, ids)
    assert texts == ["12", "7"] and lengths == [2, 1]


def test_an_oracle_scores_one_and_the_counts_are_exact(tokenizer, scripted_model):
    task = AdditionTask(num_eval=6, gen_length=8)
    answers = {e.prompt: e.response for e in task.eval_examples()}

    def oracle(input_ids):
        logits = torch.zeros(*input_ids.shape, 100)
        for row, ids in enumerate(input_ids.tolist()):
            real = [i for i in ids if i not in (0, 2)]
            prompt = tokenizer.decode(real[: real.index(34) + 1])  # up to '='
            target = tokenizer(answers[prompt])["input_ids"] + [1] * 8
            start = len(ids) - 8
            for j in range(8):
                logits[row, start + j, target[j]] = 10.0
        return logits

    result = evaluate(
        scripted_model(oracle), tokenizer, LLaDASampler(steps=8, block_length=8), task, ExactMatch(), batch_size=4
    )
    assert result.accuracy == 1.0 and result.num_samples == 6
    assert result.mean_length == pytest.approx(sum(len(a) for a in answers.values()) / 6)
    assert result.nfe_per_token <= 1.0 and result.tokens_per_s > 0
    assert result.metrics()["eval/accuracy"] == 1.0
    assert len(result.samples) == 6 and result.samples[0]["reward"] == 1.0


# --- pass@k -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 2, 1, 0.4),  # 1 - C(3,1)/C(5,1) = 1 - 3/5
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 2, 4, 1.0),  # n - c < k: some draw always holds a correct one
        (5, 0, 3, 0.0),
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
        (1, 1, 1, 1.0),
        (200, 1, 100, 0.5),  # large n: exact integer binomials
    ],
)
def test_pass_at_k_is_the_closed_form(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_refuses_impossible_counts():
    with pytest.raises(ValueError, match="pass@6 needs at least 6 samples per prompt, got 5"):
        pass_at_k(5, 1, 6)
    with pytest.raises(ValueError, match="need 0 <= c <= n"):
        pass_at_k(5, 6, 1)
    assert mean_pass_at_k([2, 0, 5], 5, 2) == pytest.approx((0.7 + 0.0 + 1.0) / 3)


# --- the evaluation loop on a scripted sampler ---------------------------------------------


class TableTask(Task):
    """Three prompts; the answer of "pN=" is "N"."""

    gen_length = 4

    def train_example(self, rng):
        raise NotImplementedError

    def eval_examples(self):
        return [Example(f"p{i}=", str(i), {"answer": str(i)}) for i in range(3)]


class ScriptedSampler(Sampler):
    """Writes the answer for the samples `correct[prompt]` marks, else "x"; one sampler call per
    batch, counted; raises once `fail_after` calls are done (a killed evaluation)."""

    fail_after = None

    def decode(self, model, state, gen_length, generator):
        raise NotImplementedError("generate is scripted whole")

    def __init__(self, tokenizer, correct, nfe=2):
        self.tokenizer, self.correct, self.nfe = tokenizer, correct, nfe
        self.calls = 0
        self.seen: dict[str, int] = {}

    def generate(self, model, prompt_ids, attention_mask=None, gen_length=4, generator=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        rows = []
        for ids in prompt_ids.tolist():
            prompt = self.tokenizer.decode(ids, skip_special_tokens=True)
            index = self.seen.get(prompt, 0)
            self.seen[prompt] = index + 1
            # With a generator the row's draw decides (reproducible per batch); else the table.
            good = (
                bool(torch.rand((), generator=generator) < 0.5) if self.correct is None else self.correct[prompt][index]
            )
            text = prompt[1:-1] if good else "x"
            completion = self.tokenizer(text)["input_ids"] + [self.tokenizer.eos_token_id]
            if prompt == "p2=" and not good:  # no EOS: truncated
                completion = self.tokenizer("xxxx")["input_ids"]
            rows.append(ids + (completion + [self.tokenizer.eos_token_id] * gen_length)[:gen_length])
        sequences = torch.tensor(rows)
        return GenerationOutput(sequences, torch.zeros(len(rows), gen_length, dtype=torch.long), self.nfe)


TABLE = {  # prompt -> correctness of samples 0..4
    "p0=": [True, False, True, False, False],  # c = 2
    "p1=": [False] * 5,  # c = 0
    "p2=": [True] * 5,  # c = 5
}


def table_evaluate(tokenizer, sampler, reward=None, **kwargs):
    kwargs = {"batch_size": 5, "samples_per_prompt": 5, **kwargs}
    return evaluate(torch.nn.Linear(1, 1), tokenizer, sampler, TableTask(), reward or ExactMatch(), **kwargs)


def test_accuracy_pass_at_k_and_counts_on_a_scripted_table(tokenizer):
    result = table_evaluate(tokenizer, ScriptedSampler(tokenizer, TABLE), pass_at=[1, 2, 5])
    assert result.num_prompts == 3 and result.samples_per_prompt == 5 and result.num_samples == 15
    assert result.accuracy == pytest.approx(7 / 15) and result.mean_reward == pytest.approx(7 / 15)
    assert result.pass_at_k == pytest.approx(
        {"pass@1": (0.4 + 0 + 1) / 3, "pass@2": (0.7 + 0 + 1) / 3, "pass@5": (1 + 0 + 1) / 3}
    )
    assert result.mean_length == pytest.approx((2 * 1 + 3 * 1 + 5 * 1 + 5 * 1) / 15)  # every text is 1 token
    assert result.nfe_per_token == pytest.approx(2 / 4) and result.truncated == 0.0
    metrics = result.metrics()
    assert metrics["eval/accuracy"] == pytest.approx(7 / 15) and metrics["eval/pass@2"] == pytest.approx(1.7 / 3)
    assert {"eval/num_samples", "eval/mean_length", "eval/tokens_per_s", "eval/nfe_per_token"} <= metrics.keys()
    assert all(isinstance(value, (int, float)) for value in metrics.values())


def test_the_default_pass_at_is_1_and_n_and_k_above_n_is_refused(tokenizer):
    result = table_evaluate(tokenizer, ScriptedSampler(tokenizer, TABLE))
    assert list(result.pass_at_k) == ["pass@1", "pass@5"]
    with pytest.raises(DllmError, match=r"pass@6 needs at least 6 samples per prompt, but there are 5"):
        table_evaluate(tokenizer, ScriptedSampler(tokenizer, TABLE), pass_at=[6])


class FieldRecorder(ExactMatch):
    def __init__(self):
        super().__init__()
        self.truncated = []

    def __call__(self, prompts, completions, **fields):
        self.truncated += fields["truncated"]
        return super().__call__(prompts, completions, **fields)


def test_rewards_get_truncated_where_no_eos_was_generated(tokenizer):
    table = {"p0=": [True] * 5, "p1=": [True] * 5, "p2=": [False, True, False, True, True]}
    reward = FieldRecorder()
    result = table_evaluate(tokenizer, ScriptedSampler(tokenizer, table), reward=reward)
    assert reward.truncated == [False] * 10 + [True, False, True, False, False]
    assert result.truncated == pytest.approx(2 / 15)


def test_a_reward_of_several_terms_reports_each_terms_mean(tokenizer):
    reward = dllm.build("reward", "weighted_sum", terms={"exact_match": 1.0, "boxed_format": 0.5}, zero_truncated=False)
    result = table_evaluate(tokenizer, ScriptedSampler(tokenizer, TABLE), reward=reward)
    assert result.reward_terms == {"exact_match": pytest.approx(7 / 15), "boxed_format": 0.0}
    assert result.metrics()["eval/reward/exact_match"] == pytest.approx(7 / 15)
    assert result.samples[0]["terms"] == {"exact_match": 1.0, "boxed_format": 0.0}


def test_completions_that_are_not_text_score_zero_and_are_counted():
    scores, invalid = score_completions(ExactMatch(), ["a", "b", "c"], ["1", None, 2], {"answer": ["1", "1", "2"]})
    assert scores.total == [1.0, 0.0, 0.0] and scores.terms == {"exact_match": [1.0, 0.0, 0.0]} and invalid == 2


# --- resuming ------------------------------------------------------------------------------


def without_timing(result):
    values = asdict(result)
    values.pop("tokens_per_s")
    return values


def test_a_killed_evaluation_resumes_without_redoing_finished_batches(tokenizer, tmp_path):
    straight = table_evaluate(tokenizer, ScriptedSampler(tokenizer, None), progress_path=tmp_path / "a.jsonl", seed=3)

    killed = ScriptedSampler(tokenizer, None)
    killed.fail_after = 2
    with pytest.raises(KeyboardInterrupt):
        table_evaluate(tokenizer, killed, progress_path=tmp_path / "b.jsonl", seed=3)
    assert killed.calls == 2 and len((tmp_path / "b.jsonl").read_text().splitlines()) == 1 + 2  # header + 2 batches

    resumed_sampler = ScriptedSampler(tokenizer, None)
    resumed = table_evaluate(tokenizer, resumed_sampler, progress_path=tmp_path / "b.jsonl", seed=3)
    assert resumed_sampler.calls == 1  # only the third batch is decoded again
    assert without_timing(resumed) == without_timing(straight)
    assert 0 < straight.accuracy < 1  # the draws decide: the same draws, interrupted or not

    again = ScriptedSampler(tokenizer, None)
    assert without_timing(table_evaluate(tokenizer, again, progress_path=tmp_path / "b.jsonl", seed=3)) == (
        without_timing(straight)
    )
    assert again.calls == 0  # a finished evaluation is read back


def progress_rows(path):
    """Every completion a progress file records, ordered by (prompt, sample)."""
    rows = [row for line in path.read_text().splitlines()[1:] for row in json.loads(line)["rows"]]
    return sorted(rows, key=lambda row: (row["prompt"], row["sample"]))


def test_a_real_sampler_gives_the_same_completions_interrupted_or_not(tokenizer, tiny_model, tmp_path):
    task = AdditionTask(num_eval=3, gen_length=8)

    class Killable(LLaDASampler):
        calls, fail_after = 0, None

        def generate(self, *args, **kwargs):
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise KeyboardInterrupt("killed")
            self.calls += 1
            return super().generate(*args, **kwargs)

    def run(path, fail_after=None):
        sampler = Killable(steps=4, block_length=8, temperature=1.0)
        sampler.fail_after = fail_after
        result = evaluate(
            tiny_model,
            tokenizer,
            sampler,
            task,
            ExactMatch(),
            batch_size=2,
            samples_per_prompt=2,
            progress_path=path,
            seed=5,
        )
        return result, sampler.calls

    straight, calls = run(tmp_path / "a.jsonl")
    assert calls == 3
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b.jsonl", fail_after=1)
    resumed, calls = run(tmp_path / "b.jsonl")
    assert calls == 2 and without_timing(resumed) == without_timing(straight)
    rows = [progress_rows(tmp_path / f"{name}.jsonl") for name in "ab"]
    assert rows[0] == rows[1]  # the same completions, scores and lengths, batch by batch
    assert len({row["completion"] for row in rows[0]}) > 1  # sampled at temperature 1: the seeds matter


def test_a_progress_file_of_another_evaluation_is_refused(tokenizer, tmp_path):
    path = tmp_path / "progress.jsonl"
    table_evaluate(tokenizer, ScriptedSampler(tokenizer, TABLE), progress_path=path)
    with pytest.raises(DllmError, match=r"holds the progress of another evaluation .* --restart"):
        table_evaluate(tokenizer, ScriptedSampler(tokenizer, TABLE), progress_path=path, seed=1)
    with pytest.raises(DllmError, match=r"another evaluation"):
        table_evaluate(tokenizer, ScriptedSampler(tokenizer, TABLE), progress_path=path, fingerprint="other weights")


@pytest.mark.parametrize(
    "name, setting, first, second",
    [
        ("fast_dllm", "threshold", 0.9, 0.8),
        ("sdar", "confidence_threshold", 0.85, 0.7),  # kept only inside the sampler's policy
        ("sdar", "eb_threshold", 0.35, 0.5),
        ("diffusion", "threshold", 0.9, 0.8),
    ],
)
def test_a_sampler_setting_change_is_another_evaluation(tokenizer, tmp_path, name, setting, first, second):
    torch.manual_seed(0)
    model = dllm.load_model("sdar_tiny" if name == "sdar" else "llada_tiny").eval()

    def run(value):
        sampler = dllm.build(
            "sampler", name, **{setting: value}, **({"block_length": 8} if name == "fast_dllm" else {})
        )
        return evaluate(
            model, tokenizer, sampler, AdditionTask(num_eval=2), ExactMatch(), progress_path=tmp_path / "p.jsonl"
        )

    run(first)
    run(first)  # the same settings resume (here: the whole evaluation is on file)
    with pytest.raises(DllmError, match="another evaluation"):
        run(second)


def test_a_line_cut_short_by_a_kill_is_dropped_and_redone(tokenizer, tmp_path):
    path = tmp_path / "progress.jsonl"
    straight = table_evaluate(tokenizer, ScriptedSampler(tokenizer, TABLE), progress_path=path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:40])  # the last batch was being written
    sampler = ScriptedSampler(tokenizer, TABLE)
    assert without_timing(table_evaluate(tokenizer, sampler, progress_path=path)) == without_timing(straight)
    assert sampler.calls == 1 and path.read_text().count("\n") == 4


# --- the markdown table --------------------------------------------------------------------


def test_the_markdown_table():
    result = EvalResult(
        accuracy=0.4,
        num_samples=10,
        mean_length=12.345,
        tokens_per_s=101.26,
        nfe_per_token=0.5,
        mean_reward=0.45,
        num_prompts=2,
        samples_per_prompt=5,
        pass_at_k={"pass@1": 0.4, "pass@5": 0.5},
        reward_terms={"math": 0.4, "format_tags": 0.5},
        truncated=0.1,
        reward_failures=1,
    )
    assert markdown_table(result, {"model": "llada_tiny", "sampler": "llada"}) == (
        "- model: llada_tiny\n"
        "- sampler: llada\n"
        "\n"
        "| metric | value |\n"
        "|---|---:|\n"
        "| prompts | 2 |\n"
        "| samples per prompt | 5 |\n"
        "| accuracy | 0.4000 |\n"
        "| mean reward | 0.4500 |\n"
        "| pass@1 | 0.4000 |\n"
        "| pass@5 | 0.5000 |\n"
        "| reward/math | 0.4000 |\n"
        "| reward/format_tags | 0.5000 |\n"
        "| mean length (tokens) | 12.35 |\n"
        "| truncated | 0.1000 |\n"
        "| tokens/s | 101.3 |\n"
        "| NFE per token | 0.500 |\n"
        "| reward failures | 1 |\n"
    )


class RecordingBar:
    """Stands in for tqdm in `dllm.evaluation`: keeps its total, position and every update."""

    bars: list["RecordingBar"] = []

    def __init__(self, total=None, initial=0, **kwargs):
        self.total, self.initial, self.n, self.updates, self.kwargs = total, initial, initial, [], kwargs
        RecordingBar.bars.append(self)

    def update(self, n=1):
        self.n += n
        self.updates.append(n)

    def close(self):
        pass


def test_the_progress_bar_counts_completions_and_moves_within_each_sampler_call(tokenizer, tiny_model, monkeypatch):
    """5 prompts x 3 samples in batches of 4 (4 sampler calls of 8 forward passes): a bar of 15
    completions, advanced by the forward passes inside each call; a resumed evaluation starts it at
    the completions its progress file holds."""
    import dllm.evaluation

    monkeypatch.setattr(dllm.evaluation, "tqdm", RecordingBar)
    sampler, task = LLaDASampler(steps=8, block_length=8), AdditionTask(num_eval=5, gen_length=8)
    RecordingBar.bars = []
    evaluate(tiny_model, tokenizer, sampler, task, ExactMatch(), batch_size=4, samples_per_prompt=3, show_progress=True)
    (bar,) = RecordingBar.bars
    assert bar.total == 15 and bar.n == 15 and bar.kwargs["unit"] == "completion"
    assert len(bar.updates) > 4 and max(bar.updates) <= 4  # moves inside each call of up to 4 completions


def test_a_resumed_evaluation_starts_its_bar_at_the_completions_already_done(tokenizer, tmp_path, monkeypatch):
    import dllm.evaluation

    path = tmp_path / "progress.jsonl"
    table_evaluate(tokenizer, ScriptedSampler(tokenizer, TABLE), progress_path=path, batch_size=4)
    header, *batches = path.read_text().splitlines()
    path.write_text("\n".join([header, *batches[:2]]) + "\n")  # two batches of 4 done, 7 completions to go
    monkeypatch.setattr(dllm.evaluation, "tqdm", RecordingBar)
    RecordingBar.bars = []
    table_evaluate(tokenizer, ScriptedSampler(tokenizer, TABLE), progress_path=path, batch_size=4)
    (bar,) = RecordingBar.bars
    assert (bar.total, bar.initial, bar.n) == (15, 8, 15)
    assert bar.updates == [4, 3]  # the scripted sampler runs no forward pass: whole calls
