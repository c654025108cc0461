"""MDPO's Running Confidence Remasking (`DiffusionSampler(rcr=True)`), by hand on scripted models."""

import pytest
import torch

import dllm
from dllm.errors import ConfigError
from dllm.samplers.base import fill_after_eos
from dllm.samplers.diffusion import DiffusionSampler
from dllm.samplers.policies import transfer_schedule
from tests.unit.samplers.test_llada import EOS, MASK, VOCAB, fixed_logits, row_generators


def probs_to_logits(table, length, batch):
    probs = torch.full((batch, length, VOCAB), 1.0 / VOCAB)
    for j, (token, p) in table.items():
        row = torch.full((VOCAB,), (1 - p) / (VOCAB - 1))
        row[token] = p
        probs[:, j] = row
    return probs.log()


def backslide_logits(input_ids):
    """Three generated positions after a one-token prompt, each proposal depending on the state:
    position 0 proposes 6 (0.6) until position 1 is revealed, then 7 (0.7); positions 1 and 2 grow
    sure (0.5 -> 0.9, 0.3 -> 0.8) once anything before them is revealed."""
    x0, x1 = input_ids[0, 1] != MASK, input_ids[0, 2] != MASK
    table = {
        1: (7, 0.7) if x1 else (6, 0.6),
        2: (4, 0.9) if x0 else (4, 0.5),
        3: (5, 0.8) if x0 or x1 else (5, 0.3),
    }
    return probs_to_logits(table, input_ids.shape[1], input_ids.shape[0])


@pytest.mark.parametrize("stop_at_eos", [True, False])
def test_rcr_remasks_a_revealed_low_confidence_token_by_hand(scripted_model, stop_at_eos):
    prompt = torch.tensor([[9]])
    plain_model, rcr_model = scripted_model(backslide_logits), scripted_model(backslide_logits)
    plain = DiffusionSampler(steps=3, stop_at_eos=stop_at_eos).generate(plain_model, prompt, gen_length=3)
    # top_k: 6 (.6) at step 0; then 4 (.9); then 5 (.8). Nothing revealed changes.
    assert plain.sequences[0, 1:].tolist() == [6, 4, 5] and plain.step_map.tolist() == [[0, 1, 2]]
    out = DiffusionSampler(steps=3, rcr=True, stop_at_eos=stop_at_eos).generate(rcr_model, prompt, gen_length=3)
    # step 0: proposals 6 (.6), 4 (.5), 5 (.3); one kept: 6 (.6).
    # step 1: proposals 4 (.9), 5 (.8) beside the held 6 (.6); two kept: 4 and 5, 6 is masked again.
    # step 2: position 0 proposes 7 (.7) and is revealed.
    assert [call[0, 1:].tolist() for call in rcr_model.calls] == [[MASK] * 3, [6, MASK, MASK], [MASK, 4, 5]]
    assert out.sequences[0, 1:].tolist() == [7, 4, 5]
    assert out.step_map.tolist() == [[2, 1, 1]]  # the step each final token was last revealed at
    assert out.nfe == 3


def mixing_logits(seed: int, eos: bool = True):
    """Proposals that depend on the whole state (every token moves every position's logits), EOS
    among the likely ones (unless not `eos`); never the mask or padding."""
    generator = torch.Generator().manual_seed(seed)
    weights, offsets = torch.randn(VOCAB, generator=generator) * 3, torch.randn(64, VOCAB, generator=generator)

    def logits_fn(input_ids):
        state = (input_ids.float() * torch.arange(1, input_ids.shape[1] + 1)).sum(1) % 7
        logits = torch.sin(state[:, None, None] * weights + offsets[: input_ids.shape[1]]) * 4
        logits[..., [0, MASK] if eos else [0, MASK, EOS]] = -torch.inf
        return logits

    return logits_fn


@pytest.mark.parametrize("step_schedule, quota, remasks", [("linear", [2, 1, 1], 1), ("ascending", [1, 2, 1], 0)])
def test_each_step_keeps_the_schedule_count_revealed(scripted_model, step_schedule, quota, remasks):
    """Before each forward a row holds exactly the schedule's running total of its current block
    (earlier blocks whole), however many revealed tokens were masked again."""
    model = scripted_model(mixing_logits(1, eos=False))
    prompt, gen_length, block = torch.tensor([[9, 5, 3]]), 8, 4
    sampler = DiffusionSampler(block_length=block, steps=6, rcr=True, step_schedule=step_schedule)
    out = sampler.generate(model, prompt, gen_length=gen_length, generator=torch.Generator().manual_seed(0))
    per_block = 3
    totals = [sum(quota[:i]) for i in range(per_block)]
    states = [call[0, 3:] for call in model.calls]
    revealed = [int((state != MASK).sum()) for state in states]
    assert revealed == [0 + t for t in totals] + [block + t for t in totals]
    remasked = sum(int(((a != MASK) & (b == MASK)).sum()) for a, b in zip(states, states[1:], strict=False))
    assert remasked == remasks  # linear: one held token loses its place (see the tokens the forwards read)
    assert ((out.step_map[0, :4] < per_block) & (out.step_map[0, 4:] >= per_block)).all()
    assert not (out.raw_completions == MASK).any()


def test_eos_stops_a_row_only_once_its_block_is_done(scripted_model):
    """EOS is the surest proposal from the start: top_k stops as soon as nothing before it is masked;
    RCR could still mask the token before it until the block ends, so it stops there."""
    probs = {0: (6, 0.5), 1: (EOS, 0.9), 2: (4, 0.6), 3: (5, 0.3), 4: (6, 0.8), 5: (7, 0.8), 6: (4, 0.8), 7: (5, 0.8)}
    prompt = torch.tensor([[9]])
    plain_sampler = DiffusionSampler(block_length=4, steps=8)
    plain = plain_sampler.generate(scripted_model(fixed_logits(probs, 1)), prompt, gen_length=8)
    assert plain.nfe == 3  # EOS, then 4 (.6), then 6 (.5): stopped
    rcr = DiffusionSampler(block_length=4, steps=8, rcr=True)
    out = rcr.generate(scripted_model(fixed_logits(probs, 1)), prompt, gen_length=8)
    assert out.nfe == 4  # the first block's four steps, not the second block's
    assert out.sequences[0, 1:].tolist() == [6, EOS] + [EOS] * 6
    assert out.raw_completions[0].tolist() == [6, EOS, 4, 5] + [MASK] * 4
    assert out.step_map[0].tolist() == [2, 0, 1, 3] + [4] * 4  # never revealed: the step after the last


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_stopping_at_eos_keeps_the_text_and_ragged_batches_decode_as_alone(scripted_model, temperature):
    """With remasking inside the current block, a finished block is final: stopping at EOS (the
    default) leaves the text up to EOS as decoding on would, and each row of a ragged batch, in any
    number of slots, decodes as it would alone."""
    prompts = torch.tensor([[0, 0, 9, 5, 3], [0, 4, 7, 6, 3], [9, 3, 5, 4, 6]])
    mask = (prompts != 0).long()
    runs = {}
    for stop, rows in [(True, None), (True, 1), (True, 2), (False, None)]:
        sampler = DiffusionSampler(block_length=4, steps=9, rcr=True, temperature=temperature, stop_at_eos=stop)
        model = scripted_model(mixing_logits(2))
        runs[stop, rows] = sampler.generate(model, prompts, mask, 12, row_generators(3, 5), max_batch_rows=rows)
    base = runs[True, None]
    for rows in (1, 2):
        assert torch.equal(runs[True, rows].sequences, base.sequences)
        assert torch.equal(runs[True, rows].step_map, base.step_map)
    on = runs[False, None]
    assert torch.equal(base.sequences[:, 5:], fill_after_eos(on.sequences[:, 5:], EOS, MASK))
    stopped = (base.sequences[:, 5:] == EOS).any(1)
    assert stopped.any() and base.row_nfe.sum() < on.row_nfe.sum()  # some row stopped early: not vacuous


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_rcr_runs_under_the_approximate_caches(cache, prompts):
    torch.manual_seed(0)
    model = dllm.load_model("llada_tiny").eval()
    ids, mask = prompts
    sampler = DiffusionSampler(block_length=4, steps=4, rcr=True, cache=cache, temperature=0.7)
    out = sampler.generate(model, ids, mask, gen_length=8, generator=torch.Generator().manual_seed(0))
    assert not (out.raw_completions == model.mask_token_id).any() or sampler.stop_at_eos
    assert (out.step_map >= 0).all() and out.step_map.max() < out.nfe


def test_the_block_cache_is_exact_under_rcr(tokenizer):
    torch.manual_seed(0)
    model = dllm.load_model("sdar_tiny").eval()
    batch = tokenizer(["12+345=", "7+8="], padding=True, return_tensors="pt")
    runs = [
        DiffusionSampler(steps=8, rcr=True, temperature=0.8, cache=cache)
        .generate(model, batch["input_ids"], batch["attention_mask"], 16, row_generators(2, 3))
        for cache in ("block", "none")
    ]  # fmt: skip
    assert torch.equal(runs[0].sequences, runs[1].sequences)
    assert torch.equal(runs[0].step_map, runs[1].step_map)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"selection": "threshold"}, "needs score confidence and selection top_k, got 'confidence' x 'threshold'"),
        ({"score": "margin"}, "needs score confidence and selection top_k, got 'margin' x 'top_k'"),
    ],
)
def test_rcr_needs_a_quota_of_confidences(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DiffusionSampler(rcr=True, **kwargs)


def plain_rcr(model, prompt, gen_length, block_length, steps):
    """The reference's rule written out plainly (autonomousvision/mdpo, `generate` with
    `overtime_conf`: fill every masked position, record the confidence of each token written, then
    mask again the lowest recorded confidences until the rest of the schedule is masked), greedy,
    remasking inside the current block. Returns (completion, the step each token was last revealed at)."""
    mask_id, length = model.mask_token_id, prompt.shape[1]
    x = torch.cat([prompt, torch.full((1, gen_length), mask_id)], dim=1)
    revealed_at = torch.full((gen_length,), -1)
    per_block, step = steps // (gen_length // block_length), 0
    for start in range(length, length + gen_length, block_length):
        quotas = transfer_schedule(torch.tensor([block_length]), per_block)[0]
        recorded = torch.zeros(block_length, dtype=torch.float64)
        for i in range(per_block):
            probs = torch.softmax(model(x).logits[0, start : start + block_length].double(), dim=-1)
            confidence, proposal = probs.max(-1)
            masked = x[0, start : start + block_length] == mask_id
            x[0, start : start + block_length][masked] = proposal[masked]
            recorded[masked] = confidence[masked]
            revealed_at[start - length : start - length + block_length][masked] = step
            lowest = recorded.topk(int(quotas[i + 1 :].sum()), largest=False).indices
            x[0, start + lowest] = mask_id
            revealed_at[start - length + lowest] = -1
            step += 1
    return x[0, length:], revealed_at


@pytest.mark.parametrize("block_length, steps, seed", [(8, 4, 1), (4, 6, 1), (4, 6, 2)])  # cases that remask
def test_matches_the_rule_written_out_plainly(scripted_model, block_length, steps, seed):
    """Tokens and `step_map` (the last reveal) as the plain rule, and not what top_k decodes."""
    model = scripted_model(mixing_logits(seed, eos=False))
    prompt = torch.tensor([[9, 5, 3]])
    out = DiffusionSampler(block_length, steps, sampling="gumbel", rcr=True).generate(model, prompt, gen_length=8)
    tokens, revealed_at = plain_rcr(model, prompt, 8, block_length, steps)
    assert out.sequences[0, 3:].tolist() == tokens.tolist()
    assert out.step_map[0].tolist() == revealed_at.tolist()
    plain = DiffusionSampler(block_length, steps, sampling="gumbel").generate(model, prompt, gen_length=8)
    assert (plain.sequences[0, 3:].tolist(), plain.step_map[0].tolist()) != (tokens.tolist(), revealed_at.tolist())
