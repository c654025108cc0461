"""dllm.likelihood: the Monte Carlo log-likelihood bound against its exact value by enumeration,
the stratified counts' marginals, determinism, LLaDA's greedy check, and the refusals."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

import dllm
from dllm.data.addition import AdditionTask
from dllm.errors import ConfigError, DllmError
from dllm.likelihood import (
    check_likelihood_support,
    elbo_samples,
    greedy_matches,
    log_likelihoods,
    stratified_counts,
)
from dllm.models.base import load_value_model
from dllm.samplers.llada import LLaDASampler
from dllm.samplers.sdar import SDARSampler

FAMILIES = ["llada_tiny", "dream_tiny", "sdar_tiny"]
PREFIX = [5, 6, 7]  # odd length: sdar_tiny's blocks of 4 put the first continuation token in the prefix's block


def sharp_model(name: str) -> torch.nn.Module:
    """A tiny model with its matrices scaled x5, so log-probs vary by several nats between tokens,
    positions and mask patterns (a fresh one's are nearly uniform: any weighting would agree)."""
    torch.manual_seed(0)
    model = dllm.load_model(name).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.mul_(5)
    return model


def exact_bound(model, prefix: list[int], continuation: list[int]) -> float:
    """The bound by enumeration, written independently of dllm.likelihood: per group of
    continuation positions (all of them; for a block model, each absolute block's), the mean
    over l in 1..n and over every l-subset of (n / l) * the masked log-probs, the model called
    plainly on prefix + continuation with the subset masked — a block model on the sequence cut
    at the group's block end, under its own block-causal mask (so earlier blocks are clean and
    later ones unseen); shifted logits read at the position before."""
    seq, start, size = prefix + continuation, len(prefix), model.block_size
    positions = list(range(start, len(seq)))
    groups = [positions] if size is None else [list(g) for _, g in itertools.groupby(positions, lambda p: p // size)]
    total = 0.0
    for group in groups:
        end = len(seq) if size is None else min(len(seq), (group[0] // size + 1) * size)
        n = len(group)
        for count in range(1, n + 1):
            subsets = list(itertools.combinations(group, count))
            rows = torch.tensor(
                [[model.mask_token_id if p in s else t for p, t in enumerate(seq[:end])] for s in subsets]
            )
            with torch.no_grad():
                log_probs = model(rows).logits.double().log_softmax(-1)
            for r, subset in enumerate(subsets):
                read = [max(p - 1, 0) if model.shift_logits else p for p in subset]
                masked = sum(log_probs[r, q, seq[p]].item() for q, p in zip(read, subset))
                total += (n / count) * masked / len(subsets) / n
    return total


@pytest.mark.parametrize("prefix", [PREFIX, []], ids=["prefix3", "noprefix"])
@pytest.mark.parametrize("name", FAMILIES)
def test_the_estimate_agrees_with_the_enumerated_bound(name, prefix):
    """4096 rows (16 groups of 256) of a 6-token continuation after a 3-token prefix (sdar_tiny:
    blocks holding 1, 4 and 1 continuation tokens) or none agree with the exact bound within 4
    standard errors, computed from the 16 independent group means (the rows of one group are
    stratified, not independent). The error is ~0.02 nats against the log-probs' ~2-nat spread."""
    model = sharp_model(name)
    continuation = [8, 9, 10, 11, 12, 13]
    rows = elbo_samples(model, prefix, continuation, mc_num=4096, mc_batch_size=256)
    groups = rows.view(16, 256).mean(1)
    error = float(groups.std() / math.sqrt(16))
    estimate = log_likelihoods(model, [(prefix, continuation)], mc_num=4096, mc_batch_size=256)[0]
    assert estimate == pytest.approx(float(rows.mean()), abs=1e-12)
    assert 0.005 < error < 0.05
    assert abs(estimate - exact_bound(model, prefix, continuation)) < 4 * error


@pytest.mark.parametrize(
    ("name", "prefix", "continuation"),
    [
        ("llada_tiny", PREFIX, [8]),
        ("llada_tiny", [], [8]),
        ("dream_tiny", PREFIX, [8]),
        ("dream_tiny", [], [8]),
        ("sdar_tiny", PREFIX, [8]),
        ("sdar_tiny", [], [8]),
        ("sdar_tiny", PREFIX, [8, 9]),
    ],
)
def test_a_draw_with_one_subset_is_the_exact_bound(name, prefix, continuation):
    """When every group of positions holds one token (one continuation token; for sdar_tiny after
    the 3-token prefix also 2 tokens, one in block 0 and one in block 1), every row masks the same
    tokens and the estimate is the exact bound up to float32 forwards: within 1e-6 nats (measured
    at most 5.6e-7 on CPU)."""
    model = sharp_model(name)
    rows = elbo_samples(model, prefix, continuation, mc_num=64, mc_batch_size=32)
    estimate = log_likelihoods(model, [(prefix, continuation)], mc_num=64, mc_batch_size=32)[0]
    assert estimate == pytest.approx(exact_bound(model, prefix, continuation), abs=1e-6)
    assert float(rows.max() - rows.min()) < 1e-6


def test_a_block_with_several_tokens_is_drawn():
    """The contrast: sdar_tiny's block 1 holding 4 of 5 continuation tokens is sampled (rows differ
    by nats), while its one-token block 0 is the same in every row."""
    rows = elbo_samples(sharp_model("sdar_tiny"), PREFIX, [8, 9, 10, 11, 12], mc_num=64, mc_batch_size=32)
    assert rows.std() > 0.5


@pytest.mark.parametrize(
    ("length", "rows"), [(1, 1), (5, 1), (3, 2), (5, 2), (6, 4), (5, 4), (7, 14), (6, 32), (16, 32), (32, 32), (5, 256)]
)
def test_each_rows_count_is_uniform(length, rows):
    """For every k in 1..L, row i's count is (k - 1 + r_i) % L + 1 with a fixed r_i: over the L
    equally likely k it takes each of 1..L once — including where i * L / rows is a half
    ((3, 2), (5, 2), (6, 4), (7, 14)), where LLaDA's round-half-to-even is not uniform."""
    counts = torch.stack([stratified_counts(torch.tensor(k), length, rows) for k in range(1, length + 1)])
    for i in range(rows):
        assert sorted(counts[:, i].tolist()) == list(range(1, length + 1))
    # LLaDA's counts, for comparison: the same where no offset is a half, skewed where one is.
    llada = torch.stack(
        [
            (torch.round(torch.linspace(float(k), k + (rows - 1) * (length / rows), steps=rows)).long() - 1) % length
            + 1
            for k in range(1, length + 1)
        ]
    )
    halves = any((2 * i * length) % (2 * rows) == rows for i in range(rows))
    assert torch.equal(llada, counts) != halves
    if (length, rows) == (3, 2):
        assert sorted(llada[:, 1].tolist()) == [1, 1, 2]
    if (length, rows) == (16, 32):  # LLaDA's defaults, 16 tokens: odd rows mask even counts only
        assert (llada[:, 1::2] % 2 == 0).all()


def test_the_stratified_rows_span_the_counts():
    """A group of b = L rows masks every count 1..L once; b = 2L rows, each twice."""
    assert sorted(stratified_counts(torch.tensor(3), 5, 5).tolist()) == [1, 2, 3, 4, 5]
    assert sorted(stratified_counts(torch.tensor(2), 4, 8).tolist()) == [1, 1, 2, 2, 3, 3, 4, 4]


@pytest.mark.parametrize("name", ["llada_tiny", "sdar_tiny"])
def test_a_requests_value_depends_on_itself_and_the_seed_only(name):
    """The same request gives the same number alone, in a list with others in any order, and on a
    rerun; another seed gives another number."""
    model = sharp_model(name)
    a, b, c = (PREFIX, [8, 9, 10]), ([4], [11, 12]), ([], [13, 14, 15, 16, 17])
    alone = log_likelihoods(model, [a])[0]
    forward = log_likelihoods(model, [a, b, c])
    backward = log_likelihoods(model, [c, b, a])
    assert forward == backward[::-1]
    assert forward[0] == alone == log_likelihoods(model, [a])[0]
    assert log_likelihoods(model, [a], seed=7)[0] != alone
    assert model.training is False


def test_the_models_mode_is_restored():
    """A model in training mode is scored in eval mode (no dropout) and left in training mode."""
    model = sharp_model("llada_tiny").train()
    value = log_likelihoods(model, [(PREFIX, [8, 9])], mc_num=32)[0]
    assert model.training
    assert value == log_likelihoods(model.eval(), [(PREFIX, [8, 9])], mc_num=32)[0]
    greedy_matches(model.train(), [(PREFIX, [8])])
    assert model.training


V = 10


def peaked(token: int, confidence: float) -> torch.Tensor:
    """[V] logits whose softmax puts `confidence` on `token` and the rest evenly elsewhere."""
    probs = torch.full((V,), (1 - confidence) / (V - 1))
    probs[token] = confidence
    return probs.log()


def scripted_logits(plan):
    """logits_fn: position p predicts plan(p, input row) = (token, confidence)."""

    def logits_fn(input_ids):
        return torch.stack(
            [torch.stack([peaked(*plan(p, row)) for p in range(input_ids.shape[1])]) for row in input_ids]
        )

    return logits_fn


def test_greedy_reveals_the_most_confident_position_first(scripted_model):
    """Full attention, prefix [5, 6, 7], continuation [3, 4, 8] at positions 3..5: position 5 is
    sure of 8 (0.9); position 3 says 3 once position 5 is revealed, 9 before (0.5); position 4
    says 4 (0.3). Greedy reveals 5, then 3, then 4 and reproduces the continuation; decoding
    left to right, or all at once, would put 9 at position 3."""

    def plan(p, row):
        if p == 3:
            return (3 if row[5] != 2 else 9), 0.5
        return {4: (4, 0.3), 5: (8, 0.9)}.get(p, (0, 0.5))

    model = scripted_model(scripted_logits(plan))
    assert greedy_matches(model, [([5, 6, 7], [3, 4, 8])]) == [True]
    assert [c[0].tolist() for c in model.calls] == [[5, 6, 7, 2, 2, 2], [5, 6, 7, 2, 2, 8], [5, 6, 7, 3, 2, 8]]
    model.calls.clear()
    assert greedy_matches(model, [([5, 6, 7], [3, 5, 8])]) == [False]  # 4 is revealed at position 4
    assert len(model.calls) == 3
    model.calls.clear()
    assert greedy_matches(model, [([5, 6, 7], [3, 4, 9])]) == [False]  # 8 at position 5, first: stops
    assert len(model.calls) == 1


def test_greedy_reads_shifted_logits_one_position_back(scripted_model):
    """A shifted model's position p - 1 predicts token p: the same plan read one back."""

    def plan(p, row):
        return {2: (3, 0.6), 3: (4, 0.9)}.get(p, (0, 0.5))

    model = scripted_model(scripted_logits(plan))
    model.shift_logits = True
    assert greedy_matches(model, [([5, 6, 7], [3, 4])]) == [True]
    assert [c[0].tolist() for c in model.calls] == [[5, 6, 7, 2, 2], [5, 6, 7, 2, 4]]


def test_greedy_on_a_block_model_finishes_the_earliest_block_first(scripted_model):
    """Blocks of 4, prefix [5, 6, 7], continuation [3, 4, 8, 9] at positions 3..6: position 3 (block
    0, confidence 0.2) is revealed first although block 1's position 5 is surer (0.9), then block 1
    by confidence: 5, 4 (0.5), 6 (0.3). The model is called on the canvas up to the block's end,
    no clean copy beside it (the [x_t ; x_0] layout would show it the continuation)."""

    def plan(p, row):
        return {3: (3, 0.2), 4: (4, 0.5), 5: (8, 0.9), 6: (9, 0.3)}.get(p, (0, 0.5))

    model = scripted_model(scripted_logits(plan))
    model.block_size = 4
    assert greedy_matches(model, [([5, 6, 7], [3, 4, 8, 9])]) == [True]
    assert [c[0].tolist() for c in model.calls] == [
        [5, 6, 7, 2],
        [5, 6, 7, 3, 2, 2, 2],
        [5, 6, 7, 3, 2, 8, 2],
        [5, 6, 7, 3, 4, 8, 2],
    ]


@pytest.mark.parametrize("name", FAMILIES)
def test_greedy_matches_what_the_model_decodes(name):
    """The continuation the tiny model itself decodes greedily (one most confident token per step,
    computed here with a plain loop) matches; changing its last revealed token does not."""
    model = sharp_model(name)
    canvas = PREFIX + [model.mask_token_id] * 5
    order = []
    for _ in range(5):
        end = len(canvas)
        hidden = [p for p in range(3, 8) if canvas[p] == model.mask_token_id]
        if model.block_size:
            hidden = [p for p in hidden if p // model.block_size == hidden[0] // model.block_size]
            end = min(end, (hidden[0] // model.block_size + 1) * model.block_size)
        with torch.no_grad():
            probs = model(torch.tensor([canvas[:end]])).logits[0].float().softmax(-1)
        read = {p: probs[max(p - 1, 0) if model.shift_logits else p] for p in hidden}
        p = max(hidden, key=lambda q: read[q].max())
        canvas[p] = int(read[p].argmax())
        order.append(p)
    decoded = canvas[3:]
    assert greedy_matches(model, [(PREFIX, decoded)]) == [True]
    wrong = list(decoded)
    wrong[order[-1] - 3] = (wrong[order[-1] - 3] + 1) % V
    assert greedy_matches(model, [(PREFIX, decoded), (PREFIX, wrong)]) == [True, False]


def test_a_block_model_with_shifted_logits_is_refused(scripted_model):
    model = scripted_model(scripted_logits(lambda p, row: (0, 0.5)))
    model.block_size, model.shift_logits = 4, True
    with pytest.raises(DllmError) as error:
        check_likelihood_support(model)
    message = str(error.value)
    assert "ScriptedModel" in message and "block_size 4" in message and "generate_until" in message
    assert "\n" not in message
    with pytest.raises(DllmError, match="shifted logits"):
        log_likelihoods(model, [(PREFIX, [3])])
    with pytest.raises(DllmError, match="shifted logits"):
        greedy_matches(model, [(PREFIX, [3])])


def test_a_model_without_a_mask_token_is_refused(scripted_model):
    model = scripted_model(scripted_logits(lambda p, row: (0, 0.5)))
    model.mask_token_id = None
    with pytest.raises(DllmError) as error:
        check_likelihood_support(model)
    message = str(error.value)
    assert "ScriptedModel has no mask_token_id" in message and "load a masked diffusion model" in message
    assert "\n" not in message


def test_a_value_model_is_refused():
    model = load_value_model("llada_tiny")
    with pytest.raises(DllmError, match="value model .*load the policy"):
        check_likelihood_support(model)


def test_full_attention_and_block_models_are_supported():
    for name in FAMILIES:
        check_likelihood_support(dllm.load_model(name))


def test_an_empty_continuation_is_refused(scripted_model):
    """Refused by its index before any forward (the scripted model records none)."""
    scripted = scripted_model(scripted_logits(lambda p, row: (0, 0.5)))
    with pytest.raises(DllmError, match="empty continuation in request 2"):
        log_likelihoods(scripted, [(PREFIX, [8]), ([], [9]), (PREFIX, [])], mc_num=32)
    assert scripted.calls == []
    model = sharp_model("llada_tiny")
    with pytest.raises(DllmError, match="empty continuation in request 1: .*at least one continuation token"):
        log_likelihoods(model, [(PREFIX, [8]), (PREFIX, [])])
    with pytest.raises(DllmError, match="empty continuation in request 0"):
        greedy_matches(model, [(PREFIX, [])])
    with pytest.raises(DllmError, match="empty continuation: "):
        elbo_samples(model, PREFIX, [])


@pytest.mark.parametrize(("mc_num", "mc_batch_size"), [(100, 32), (0, 32), (16, 32), (32, 0), (-32, 32)])
def test_mc_settings_that_do_not_split_into_groups_are_refused(mc_num, mc_batch_size):
    model = sharp_model("llada_tiny")
    with pytest.raises(ConfigError, match=f"mc_num {mc_num} with mc_batch_size {mc_batch_size}: .*positive multiple"):
        log_likelihoods(model, [(PREFIX, [8])], mc_num=mc_num, mc_batch_size=mc_batch_size)


SFT = Path(__file__).parents[1] / "fixtures" / "addition_sft_tiny"


def test_a_trained_model_ranks_the_right_sum_first_and_greedy_agrees_with_its_decoder(tokenizer):
    """The tiny SFT checkpoint of the default addition job (tests/fixtures/addition_sft_tiny, 0.615
    held-out accuracy), on the first 40 held-out problems in its format (fixed width, the answer
    and EOS filling 8 tokens), at the shipped defaults (mc_num 128, mc_batch_size 32, seed 1234):
    the right sum's estimate beats the near miss (last digit + 1) on at least 30 (measured 35), and
    on every problem greedy decoding gets right; and `greedy_matches` is True exactly where LLaDA's
    decoder at one token per step in one block (the same greedy order) decodes the right sum."""
    model = dllm.load_model(SFT)
    examples = AdditionTask(fixed_width=True).eval_examples()[:40]

    def request(example, answer):
        ids = tokenizer(answer)["input_ids"]
        return tokenizer(example.prompt)["input_ids"], ids + [tokenizer.eos_token_id] * (8 - len(ids))

    right = [request(e, e.response) for e in examples]
    near = [request(e, e.response[:-1] + str((int(e.response[-1]) + 1) % 10)) for e in examples]
    scores = log_likelihoods(model, right + near)
    wins = [a > b for a, b in zip(scores[:40], scores[40:])]
    greedy = greedy_matches(model, right)
    prompts = torch.tensor([p for p, _ in right])
    decoded = LLaDASampler(steps=8, block_length=8).generate(model, prompts, torch.ones_like(prompts), gen_length=8)
    assert greedy == [row[prompts.shape[1] :].tolist() == c for row, (_, c) in zip(decoded.sequences, right)]
    assert sum(wins) >= 30 and 10 <= sum(greedy) < 40
    assert all(win for win, match in zip(wins, greedy) if match)


def test_greedy_on_a_block_model_agrees_with_sdars_decoder():
    """SDAR's decoder at one token per step (`low_confidence_static`, 4 steps per block of 4, no EOS
    stop) on sdar_tiny after a 3-token prompt: its tokens through the end of block 2 (9 tokens: 1
    sharing the prompt's block, then two whole blocks) are what `greedy_matches` accepts, and a
    change to the last of them is refused. (A continuation ending inside a block is another
    matter: the decoder decodes that block's later positions too, as masks the model sees, where
    `greedy_matches`' canvas ends with the continuation, as the likelihood's does.)"""
    model = sharp_model("sdar_tiny")
    prompt = torch.tensor([PREFIX])
    sampler = SDARSampler(denoising_steps=4, remasking_strategy="low_confidence_static", stop_at_eos=False)
    decoded = sampler.generate(model, prompt, torch.ones_like(prompt), gen_length=12).sequences[0, 3:12].tolist()
    wrong = decoded[:-1] + [(decoded[-1] + 1) % V]
    assert greedy_matches(model, [(PREFIX, decoded), (PREFIX, wrong)]) == [True, False]


@pytest.mark.parametrize("name", ["llada_tiny", "dream_tiny"])
def test_guided_estimate_of_one_token_is_llada_guided_log_prob(name):
    """cfg 0.5 with a one-token continuation (every row masks it: the estimate is exact): the
    log-prob of the token under uncond + 1.5 * (cond - uncond), where cond reads prefix + mask
    and uncond the same with the prefix masked too (LLaDA's `get_logits`), computed here by hand;
    the greedy check is whether that guided argmax is the token."""
    model = sharp_model(name)
    mask = model.mask_token_id
    read = len(PREFIX) - 1 if model.shift_logits else len(PREFIX)  # shifted: the position before predicts
    with torch.no_grad():
        cond = model(torch.tensor([PREFIX + [mask]])).logits[0, read].double()
        uncond = model(torch.tensor([[mask] * (len(PREFIX) + 1)])).logits[0, read].double()
    logits = uncond + 1.5 * (cond - uncond)
    token = int(logits.argmax())
    other = int(logits.argsort()[-2])
    for continuation in ([token], [other]):
        expected = float(logits.log_softmax(-1)[continuation[0]])
        (estimate,) = log_likelihoods(model, [(PREFIX, continuation)], mc_num=4, mc_batch_size=2, cfg=0.5)
        assert estimate == pytest.approx(expected, abs=1e-5)
        unguided = float(cond.log_softmax(-1)[continuation[0]])
        assert abs(estimate - unguided) > 1e-3  # guidance changed the number
    assert greedy_matches(model, [(PREFIX, [token]), (PREFIX, [other])], cfg=0.5) == [True, False]


def test_guidance_is_refused_on_block_models_and_below_zero():
    with pytest.raises(DllmError, match="cfg 0.5 on .*block diffusion model.*drop cfg"):
        log_likelihoods(sharp_model("sdar_tiny"), [(PREFIX, [9])], cfg=0.5)
    with pytest.raises(ConfigError, match="cfg -1"):
        log_likelihoods(sharp_model("llada_tiny"), [(PREFIX, [9])], cfg=-1)
