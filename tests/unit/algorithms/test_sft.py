import math
import random

import pytest
import torch

from dllm.algorithms.sft import SFT, SFTBatch, collate_sft, masked_diffusion_loss
from dllm.data.base import Example
from dllm.errors import ConfigError


def test_loss_equals_hand_computed_value():
    # uniform logits over 4 tokens: every masked token costs log 4
    logits = torch.zeros(2, 3, 4)
    targets = torch.tensor([[0, 1, 2], [0, 3, 3]])
    response_mask = torch.tensor([[0, 1, 1], [0, 1, 1]])
    masked = torch.tensor([[False, True, False], [False, True, True]])
    p_mask = torch.tensor([0.5, 0.25])
    # row 0: log4 / 0.5 / 2; row 1: 2 * log4 / 0.25 / 2; mean over the 2 rows
    expected = (math.log(4) / 0.5 / 2 + 2 * math.log(4) / 0.25 / 2) / 2
    loss = masked_diffusion_loss(logits, targets, masked, p_mask, response_mask)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(2.5 * math.log(4))


def test_loss_with_peaked_logits():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])  # p(target 0) = 3/4 at position 1
    loss = masked_diffusion_loss(
        logits, torch.tensor([[1, 0]]), torch.tensor([[False, True]]), torch.tensor([0.5]), torch.tensor([[0, 1]])
    )
    assert loss.item() == pytest.approx(-math.log(0.75) / 0.5)


def test_collate_pads_prompts_left_and_responses_with_eos(tokenizer):
    batch = collate_sft(tokenizer, [Example("1+1=", "2"), Example("10+10=", "20")], gen_length=4)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    two, zero = tokenizer.convert_tokens_to_ids(["2", "0"])
    assert batch.input_ids[0].tolist()[:2] == [pad, pad]
    assert batch.input_ids[0, -4:].tolist() == [two, eos, eos, eos]
    assert batch.input_ids[1, -4:].tolist() == [two, zero, eos, eos]
    assert batch.attention_mask[0].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    assert batch.response_mask[1].tolist() == [0] * 6 + [1] * 4


def test_collate_refuses_responses_without_room_for_eos(tokenizer):
    with pytest.raises(ConfigError, match="raise task.gen_length"):
        collate_sft(tokenizer, [Example("1+1=", "1234")], gen_length=4)


def test_rate_noise_never_masks_the_prompt_and_tracks_p_mask():
    sft = SFT(eps=0.1, masking="rate")
    length = 400
    batch = SFTBatch(
        input_ids=torch.full((64, length), 7),
        attention_mask=torch.ones(64, length, dtype=torch.long),
        response_mask=torch.cat([torch.zeros(64, 100), torch.ones(64, 300)], 1).long(),
    )
    noisy, masked, p_mask = sft.noise(batch, mask_token_id=2, generator=torch.Generator().manual_seed(0))
    assert not masked[:, :100].any()
    assert torch.equal(noisy == 2, masked)
    assert ((p_mask >= 0.1) & (p_mask <= 1.0)).all()
    per_row = masked[:, 100:].float().mean(1)
    assert torch.allclose(per_row, p_mask, atol=0.1)  # 300 Bernoulli draws per row


def test_count_masking_masks_exactly_l_of_each_rows_response_tokens_and_weighs_n_over_l():
    sft = SFT(masking="count")
    response_mask = torch.zeros(3, 10, dtype=torch.long)
    response_mask[0, 2:], response_mask[1, 6:], response_mask[2, 9:] = 1, 1, 1  # 8, 4, 1 response tokens
    batch = SFTBatch(input_ids=torch.full((3, 10), 7), attention_mask=torch.ones(3, 10, dtype=torch.long),
                     response_mask=response_mask)  # fmt: skip
    generator, seen = torch.Generator().manual_seed(0), [set(), set(), set()]
    for _ in range(200):
        noisy, masked, p_mask = sft.noise(batch, mask_token_id=2, generator=generator)
        assert torch.equal(noisy == 2, masked) and not (masked & ~response_mask.bool()).any()
        counts = masked.sum(1)
        assert torch.allclose(p_mask, counts / response_mask.sum(1))  # weight 1/p = n/l
        for row, count in enumerate(counts.tolist()):
            seen[row].add(count)
    assert seen == [set(range(1, 9)), {1, 2, 3, 4}, {1}]  # l ~ U{1..n}, never 0
    # then the loss of a row is the mean cross-entropy of its masked tokens (uniform logits: log V)
    logits, targets = torch.zeros(3, 10, 5), torch.zeros(3, 10, dtype=torch.long)
    loss = masked_diffusion_loss(logits, targets, masked, p_mask, response_mask)
    assert loss.item() == pytest.approx(math.log(5))


def test_loss_is_reproducible_from_the_generator(tiny_model, tokenizer):
    from dllm.models.base import denoiser_logits

    sft = SFT()
    batch = collate_sft(tokenizer, [Example("12+3=", "15"), Example("4+4=", "8")], gen_length=4)
    first = sft.loss(tiny_model, batch, torch.Generator().manual_seed(5)).loss
    again = sft.loss(tiny_model, batch, torch.Generator().manual_seed(5)).loss
    noisy, masked, p_mask = sft.noise(batch, 2, torch.Generator().manual_seed(5))
    manual = masked_diffusion_loss(
        denoiser_logits(tiny_model, noisy, batch.attention_mask), batch.input_ids, masked, p_mask, batch.response_mask
    )
    assert first.item() == again.item() == pytest.approx(manual.item())


def test_a_few_steps_fit_a_fixed_batch(tiny_model, tokenizer):
    sft = SFT()
    examples = [Example("12+3=", "15"), Example("4+4=", "8")]
    batch = collate_sft(tokenizer, examples, gen_length=4)
    before = [p.detach().clone() for p in tiny_model.parameters()]
    optimizer = torch.optim.AdamW(tiny_model.parameters(), lr=1e-2)
    tiny_model.train()

    def mean_loss():
        return sum(sft.loss(tiny_model, batch, torch.Generator().manual_seed(s)).loss.item() for s in range(8)) / 8

    initial = mean_loss()
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        optimizer.zero_grad()
        sft.loss(tiny_model, batch, generator).loss.backward()
        optimizer.step()
    assert mean_loss() < 0.5 * initial
    assert all(not torch.equal(a, b) for a, b in zip(before, tiny_model.parameters()))


def test_micro_batches_draw_fresh_examples(tokenizer, tiny_model):
    from dllm.algorithms.base import TrainContext
    from dllm.data.addition import AdditionTask

    ctx = TrainContext(
        tiny_model, tokenizer, AdditionTask(), None, None, 4, random.Random(0), torch.Generator(), torch.device("cpu")
    )
    first, second = list(SFT().micro_batches(ctx, 2))
    assert first.input_ids.shape[0] == 4 and first.input_ids.shape[1] >= 8 + 5
    assert not torch.equal(first.input_ids[:, -8:], second.input_ids[:, -8:])


def test_bad_eps_and_masking_are_refused():
    with pytest.raises(ConfigError, match="sft.eps"):
        SFT(eps=1.0)
    with pytest.raises(ConfigError, match="sft.masking must be rate or count"):
        SFT(masking="counts")
