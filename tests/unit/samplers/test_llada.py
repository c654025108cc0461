import math

import pytest
import torch

import dllm
from dllm.errors import ConfigError
from dllm.samplers.llada import LLaDASampler
from dllm.samplers.policies import select_top_k, transfer_schedule
from dllm.samplers.tokens import gumbel_max_sample

VOCAB = 8
MASK, EOS = 2, 1


def row_generators(rows: int, seed: int) -> list[torch.Generator]:
    """One seeded generator per row: each row then samples as it would alone, in any batch."""
    return [torch.Generator().manual_seed(seed + row) for row in range(rows)]


def fixed_logits(probabilities: dict[int, tuple[int, float]], prompt_length: int):
    """Logits whose softmax at generated position j puts `p` on token `t` for {j: (t, p)} and
    spreads the rest evenly; every other position is uniform."""

    def logits_fn(input_ids):
        batch, length = input_ids.shape
        probs = torch.full((batch, length, VOCAB), 1.0 / VOCAB)
        for j, (token, p) in probabilities.items():
            row = torch.full((VOCAB,), (1 - p) / (VOCAB - 1))
            row[token] = p
            probs[:, prompt_length + j] = row
        return probs.log()

    return logits_fn


def test_transfer_schedule_spreads_the_remainder_first():
    assert transfer_schedule(torch.tensor([5, 8, 2]), 3).tolist() == [[2, 2, 1], [3, 3, 2], [1, 1, 0]]


def test_select_top_k_per_row():
    confidence = torch.tensor([[0.1, 0.9, 0.5, -math.inf], [0.3, 0.2, 0.7, 0.1]])
    chosen = select_top_k(confidence, torch.tensor([2, 1]))
    assert chosen.tolist() == [[False, True, True, False], [False, False, True, False]]


def test_low_confidence_reveals_the_most_confident_first(scripted_model):
    # one block of 4, two steps: the two most confident (positions 0 and 2) go first
    model = scripted_model(fixed_logits({0: (6, 0.9), 1: (7, 0.5), 2: (4, 0.8), 3: (5, 0.6)}, prompt_length=1))
    out = LLaDASampler(steps=2, block_length=4, stop_at_eos=False).generate(model, torch.tensor([[9]]), gen_length=4)
    assert out.sequences.tolist() == [[9, 6, 7, 4, 5]]
    assert out.step_map.tolist() == [[0, 1, 0, 1]]
    assert out.nfe == 2
    assert model.calls[1].tolist() == [[9, 6, MASK, 4, MASK]]  # the state of the second step


def test_semi_autoregressive_blocks_finish_in_order(scripted_model):
    # position 2 is the most confident, but block 0 (positions 0-1) must finish first
    model = scripted_model(fixed_logits({0: (6, 0.5), 1: (7, 0.6), 2: (4, 0.99), 3: (5, 0.7)}, prompt_length=1))
    out = LLaDASampler(steps=4, block_length=2, stop_at_eos=False).generate(model, torch.tensor([[9]]), gen_length=4)
    assert out.step_map.tolist() == [[1, 0, 2, 3]]
    assert out.sequences[0, 1:].tolist() == [6, 7, 4, 5]


def test_each_step_reveals_exactly_the_scheduled_count(tiny_model, prompts):
    ids, mask = prompts
    out = LLaDASampler(steps=6, block_length=8, stop_at_eos=False).generate(tiny_model, ids, mask, gen_length=16)
    # two blocks of 8 tokens, 3 steps each: 3, 3, 2 tokens per step in every row
    for row in out.step_map:
        assert torch.bincount(row, minlength=6).tolist() == [3, 3, 2, 3, 3, 2]
    assert out.nfe == 6
    assert (out.sequences[:, ids.shape[1] :] != tiny_model.mask_token_id).all()
    assert torch.equal(out.sequences[:, : ids.shape[1]], ids)


def test_stops_at_eos_and_fills_after_it(scripted_model):
    model = scripted_model(fixed_logits({0: (6, 0.9), 1: (EOS, 0.95)}, prompt_length=1))
    sampler = LLaDASampler(steps=8, block_length=2)
    out = sampler.generate(model, torch.tensor([[9]]), gen_length=8)
    assert out.sequences[0, 1:].tolist() == [6] + [EOS] * 7
    # the raw trajectory: blocks 2-4 were never decoded, masked at the step after the last
    assert out.raw_completions[0].tolist() == [6, EOS] + [MASK] * 6
    assert out.step_map.tolist() == [[1, 0, 2, 2, 2, 2, 2, 2]]
    assert out.nfe == 2
    full = LLaDASampler(steps=8, block_length=2, stop_at_eos=False).generate(model, torch.tensor([[9]]), gen_length=8)
    assert full.nfe == 8
    assert full.sequences[0, :3].tolist() == out.sequences[0, :3].tolist()  # identical up to the EOS


def test_classifier_free_guidance_combines_conditional_and_unconditional(scripted_model):
    def logits_fn(input_ids):
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], VOCAB)
        conditional = input_ids[:, 0] != MASK
        logits[conditional, 1, 4], logits[conditional, 1, 5] = 1.0, 1.1  # prefers 5
        logits[~conditional, 1, 4], logits[~conditional, 1, 5] = 0.0, 1.2
        return logits

    plain = LLaDASampler(steps=1, block_length=1).generate(scripted_model(logits_fn), torch.tensor([[9]]), gen_length=1)
    assert plain.sequences[0, 1] == 5
    model = scripted_model(logits_fn)
    guided = LLaDASampler(steps=1, block_length=1, cfg_scale=1.0).generate(model, torch.tensor([[9]]), gen_length=1)
    # guided = un + 2 (cond - un): token 4 -> 2.0, token 5 -> 1.0
    assert guided.sequences[0, 1] == 4
    assert guided.nfe == 2
    assert model.calls[0].tolist() == [[9, MASK], [MASK, MASK]]


def test_gumbel_max_is_float64_over_the_whole_sequence(scripted_model):
    logits = torch.randn(1, 3, VOCAB)
    model = scripted_model(lambda ids: logits.clone())
    generator = torch.Generator().manual_seed(7)
    out = LLaDASampler(steps=1, block_length=1, temperature=0.7).generate(
        model, torch.tensor([[9, 9]]), gen_length=1, generator=generator
    )
    noise = torch.rand((1, 3, VOCAB), dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    expected = (logits.double().exp() / (-noise.log()) ** 0.7).argmax(-1)[0, 2]
    assert out.sequences[0, 2] == expected


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[[0.1, 3.0, 0.2]]])
    assert gumbel_max_sample(logits, 0.0, None).tolist() == [[1]]


def test_seeded_sampling_reproduces_and_differs_across_seeds(tiny_model, prompts):
    ids, mask = prompts
    sampler = LLaDASampler(steps=8, block_length=8, temperature=1.0, remasking="random", stop_at_eos=False)

    def run(seed):
        return sampler.generate(tiny_model, ids, mask, 8, torch.Generator().manual_seed(seed)).sequences

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_batched_rows_match_single_rows(tiny_model, tokenizer):
    """Left padding and batching change nothing for a row that needs no padding."""
    batch = tokenizer(["12+345=", "7+8="], padding=True, return_tensors="pt")
    sampler = LLaDASampler(steps=8, block_length=4, stop_at_eos=False)
    together = sampler.generate(tiny_model, batch["input_ids"], batch["attention_mask"], 8).sequences
    alone = sampler.generate(tiny_model, batch["input_ids"][:1], batch["attention_mask"][:1], 8).sequences
    assert torch.equal(together[:1], alone)


@pytest.mark.parametrize(
    "kwargs, gen_length, message",
    [
        ({"block_length": 3}, 8, r"gen_length \(8\) must be a multiple of block_length \(3\)"),
        ({"steps": 3, "block_length": 4}, 8, r"steps \(3\) must be a multiple of the number of blocks"),
        ({}, 0, "gen_length must be a positive"),
    ],
)
def test_impossible_schedules_are_refused(tiny_model, kwargs, gen_length, message):
    with pytest.raises(ConfigError, match=message):
        dllm.build_sampler("llada", **kwargs).generate(tiny_model, torch.tensor([[5, 6]]), gen_length=gen_length)


def test_bad_prompts_are_refused(tiny_model):
    sampler = dllm.build_sampler("llada", steps=4, block_length=4)
    with pytest.raises(ConfigError, match="exceeds the model's context of 4096"):
        sampler.generate(tiny_model, torch.full((1, 4094), 5), gen_length=4)
    with pytest.raises(ConfigError, match="non-empty"):
        sampler.generate(tiny_model, torch.zeros((1, 0), dtype=torch.long), gen_length=4)
    with pytest.raises(ConfigError, match="left-padded"):
        sampler.generate(tiny_model, torch.tensor([[5, 0]]), torch.tensor([[1, 0]]), gen_length=4)
    with pytest.raises(ConfigError, match="contains the mask token"):
        sampler.generate(tiny_model, torch.tensor([[5, 2]]), gen_length=4)
    with pytest.raises(ConfigError, match="remasking must be"):
        dllm.build_sampler("llada", remasking="high_confidence")
