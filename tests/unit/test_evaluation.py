import pytest
import torch

from dllm.data.addition import AdditionTask
from dllm.evaluation import decode_completions, evaluate
from dllm.rewards.exact_match import ExactMatch
from dllm.samplers.llada import LLaDASampler


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
