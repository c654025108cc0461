"""The trace estimator replays exactly the states the sampler decoded from."""

import pytest
import torch

from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.rollout import Rollout
from dllm.algorithms.value import value_model_for
from dllm.samplers.diffusion import DiffusionSampler
from dllm.samplers.fast_dllm import FastDLLMSampler
from dllm.samplers.llada import LLaDASampler
from dllm.samplers.sdar import SDARSampler
from tests.unit.algorithms.rl_helpers import (
    EarlyEOS,
    Recorder,
    block_states_match,
    decoded_columns,
    replay_errors,
    sampled_rollout,
    step_forwards,
    tiny,
)

EOS = 1
EOS_BIAS = 3.0  # rows stop at different steps, most before the last block
RAGGED = ("12+345=", "7+8=", "99*9=1", "1=", "314+15=", "2*3=")


def steps_rollout(step_map, block_size, prompt_length=4, scored=None):
    """A rollout with `step_map` [1, G] after a `prompt_length`-token prompt (in a 4-column prompt);
    `scored` [1, G] the actions (default: every token)."""
    steps = torch.tensor(step_map)
    prompt_mask = (torch.arange(4) >= 4 - prompt_length).long()[None]
    scored = torch.ones_like(steps, dtype=torch.bool) if scored is None else torch.tensor(scored)
    return Rollout(
        sequences=torch.zeros(1, 4 + steps.shape[1], dtype=torch.long),
        attention_mask=torch.cat([prompt_mask, torch.ones_like(steps)], 1),
        step_map=steps, scored=scored, group=torch.zeros(1),
        rewards=torch.zeros(1), truncated=torch.zeros(1, dtype=torch.bool), prompt_length=4,
        block_size=block_size, mask_id=2,
    )  # fmt: skip


def test_rounds_merge_steps_per_block():
    estimator = TraceEstimator(shrinkage=2)
    step_map = [[3, 0, 1, 2, 7, 6, 4, 5]]
    assert estimator.rounds(steps_rollout(step_map, 4)).tolist() == [[1, 0, 0, 1, 1, 1, 0, 0]]
    # full attention: ranks over the whole completion
    assert estimator.rounds(steps_rollout(step_map, None)).tolist() == [[1, 0, 0, 1, 3, 3, 2, 2]]
    # a 3-token prompt: its tail shares the first block with one completion token; blocks (3), (0 1 2 7), (6 4 5)
    assert estimator.rounds(steps_rollout(step_map, 4, prompt_length=3)).tolist() == [[0, 0, 0, 1, 1, 1, 0, 0]]


def test_rounds_count_the_steps_that_revealed_actions():
    # EOS at position 2 (step 2); after it, tokens the sampler revealed at steps 0, 4 and 3, and
    # one it never revealed (step 6, after the last): only steps 1, 2, 5 revealed actions
    step_map = [[5, 1, 2, 0, 4, 3, 6]]
    scored = [[True, True, True, False, False, False, False]]
    rounds = TraceEstimator().rounds(steps_rollout(step_map, None, scored=scored))
    # revealed before step 1: visible in every state (-1); steps 3 and 4 fall in step 2's round
    assert rounds.tolist() == [[2, 0, 1, -1, 1, 1, 2]]
    assert TraceEstimator(shrinkage=2).rounds(steps_rollout(step_map, None, scored=scored)).tolist() == [
        [1, 0, 0, -1, 0, 0, 1]
    ]


def recorded_patterns(recorder, start, end):
    """[forward][row] bool mask pattern of positions start..end in each recorded input."""
    return [(inputs[:, start:end] == recorder.mask_token_id) for inputs in recorder.inputs]


def policy(preset, eos):
    """A tiny model; with `eos`, one that emits EOS early (rows stop at different steps)."""
    return EarlyEOS(tiny(preset), bias=EOS_BIAS) if eos else tiny(preset)


@pytest.mark.parametrize(
    "make_sampler",
    [
        lambda eos: LLaDASampler(steps=16, block_length=4, temperature=1.0, stop_at_eos=eos),
        lambda eos: DiffusionSampler(block_length=4, selection="threshold", threshold=0.02, temperature=1.0,
                                     stop_at_eos=eos),
    ],
    ids=["llada", "threshold"],
)  # fmt: skip
@pytest.mark.parametrize("shrinkage", [1, 2])
@pytest.mark.parametrize("eos", [False, True], ids=["no-eos-stop", "eos-stop"])
def test_full_attention_states_are_the_samplers(make_sampler, shrinkage, eos, tokenizer):
    """Each replayed state is, token for token, the sequence the sampler's forward saw before
    the first step of the merged step (the sampler runs one forward per step)."""
    recorder = Recorder(policy("llada_tiny", eos))
    rollout = sampled_rollout(recorder, make_sampler(eos), tokenizer, RAGGED, gen_length=16, eos_id=EOS)
    p = rollout.prompt_length
    states = list(TraceEstimator(shrinkage).states(rollout))
    assert states and sum(int(actions.sum()) for _, actions in states) == int(rollout.scored.sum())
    forwards = step_forwards(recorder, rollout)
    for noisy, actions in states:
        for row in range(noisy.shape[0]):
            if actions[row].any():
                call, index = forwards[row][int(rollout.step_map[row][actions[row]].min())]
                assert torch.equal(noisy[row, p:], recorder.inputs[call][index, p:])


# Prompts of 7, 4, 5 and 6 characters: every phase modulo the block of 4, left-padded into one batch.
EVERY_PHASE = ("12+345=", "7+8=", "1+22=", "9+9+9=")


@pytest.mark.parametrize("strategy", ["low_confidence_dynamic", "sequential", "entropy_bounded"])
@pytest.mark.parametrize("eos", [False, True], ids=["no-eos-stop", "eos-stop"])
def test_block_states_are_the_samplers(strategy, eos, tokenizer):
    recorder = Recorder(policy("sdar_tiny", eos))
    sampler = SDARSampler(remasking_strategy=strategy, denoising_steps=2, confidence_threshold=0.05,
                          temperature=1.0, use_cache=False, stop_at_eos=eos)  # fmt: skip
    rollout = sampled_rollout(recorder, sampler, tokenizer, prompts=EVERY_PHASE, gen_length=12, eos_id=EOS)
    # every row's blocks (fewer where a row stops at EOS early) were compared, token for token
    assert block_states_match(recorder, rollout, TraceEstimator().states(rollout)) >= (8 if eos else 4 * 4)


def test_packed_replay_equals_the_naive_one(tokenizer):
    model = tiny("sdar_tiny")
    sampler = SDARSampler(denoising_steps=4, temperature=1.0, stop_at_eos=False)
    rollout = sampled_rollout(model, sampler, tokenizer, prompts=EVERY_PHASE, gen_length=16)
    with torch.no_grad():
        packed = TraceEstimator(packed=True).gather(model, rollout)
        naive = TraceEstimator(packed=False).gather(model, rollout)
    assert (packed < 0).all()
    torch.testing.assert_close(packed, naive, atol=2e-5, rtol=1e-5)


def test_every_scored_token_is_scored_once_with_its_log_prob(tokenizer):
    model = tiny("dream_tiny")  # shifted logits
    rollout = sampled_rollout(model, LLaDASampler(steps=4, block_length=8, stop_at_eos=False), tokenizer)
    with torch.no_grad():
        log_probs, scored = TraceEstimator().log_probs(model, rollout, {})
    assert scored.all() and (log_probs < 0).all()


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_log_probs_are_the_samplers_own(temperature, tokenizer):
    """Each token's log-prob is the log-softmax the sampler's forward gave it at the step that
    revealed it: the policy gradient is taken on the very distribution that sampled it."""
    recorder = Recorder(tiny("llada_tiny"))
    sampler = LLaDASampler(steps=4, block_length=8, temperature=temperature, stop_at_eos=False)
    rollout = sampled_rollout(recorder, sampler, tokenizer)
    p = rollout.prompt_length
    with torch.no_grad():
        log_probs, scored = TraceEstimator().log_probs(recorder.inner, rollout, {})
    completions = rollout.completions
    forwards = step_forwards(recorder, rollout)
    for row in range(completions.shape[0]):
        for j in range(completions.shape[1]):
            call, index = forwards[row][int(rollout.step_map[row, j])]
            logits = recorder.logits_at(call, index, p + j).double()
            expected = torch.log_softmax(logits, -1)[completions[row, j]]
            assert scored[row, j]
            assert float(log_probs[row, j]) == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.parametrize("block_length", [4, 8])
def test_block_log_probs_are_the_samplers_own_for_every_prompt_phase(block_length, tokenizer):
    """SDAR: prompts of every phase in one ragged batch; each token's replayed log-prob is the
    log-softmax of the sampler's forward at the step that revealed it (no cache: forward k is step k)."""
    recorder = Recorder(tiny("sdar_tiny"))
    sampler = SDARSampler(block_length=block_length, denoising_steps=2, temperature=1.0, use_cache=False,
                          stop_at_eos=False)  # fmt: skip
    rollout = sampled_rollout(recorder, sampler, tokenizer, prompts=EVERY_PHASE, gen_length=16)
    assert rollout.overhang is not None and bool((rollout.overhang_steps >= 0).any())
    with torch.no_grad():
        log_probs, scored = TraceEstimator().log_probs(recorder.inner, rollout, {})
        naive = TraceEstimator(packed=False).gather(recorder.inner, rollout)
    columns = decoded_columns(rollout, 16)
    forwards = step_forwards(recorder, rollout)
    for row in range(rollout.step_map.shape[0]):
        for j in range(16):
            call, index = forwards[row][int(rollout.step_map[row, j])]
            logits = recorder.logits_at(call, index, int(columns[row, j])).double()
            expected = torch.log_softmax(logits, -1)[rollout.completions[row, j]]
            assert scored[row, j]
            assert float(log_probs[row, j]) == pytest.approx(float(expected), abs=1e-5)
            assert float(naive[row, j]) == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.parametrize(
    "preset, sampler",
    [
        ("llada_tiny", LLaDASampler(steps=16, block_length=4, temperature=1.0)),
        ("dream_tiny", LLaDASampler(steps=16, block_length=4, temperature=1.0)),  # shifted logits
        ("llada_tiny", FastDLLMSampler(block_length=8, threshold=0.012, temperature=1.0, use_cache="none")),
        ("sdar_tiny", SDARSampler(denoising_steps=2, confidence_threshold=0.05, temperature=1.0, use_cache=False)),
        (
            "sdar_tiny",
            SDARSampler(block_length=8, denoising_steps=4, confidence_threshold=0.05, temperature=1.0, use_cache=False),
        ),
        ("sdar_tiny", LLaDASampler(steps=8, block_length=4, temperature=1.0)),
    ],
    ids=["llada", "llada-dream", "fast_dllm", "sdar", "sdar-block8", "llada-sdar"],
)
def test_log_probs_are_the_samplers_own_when_it_stops_at_eos(preset, sampler, tokenizer):
    """Under the shipped default (stop at EOS), with a policy that stops early and ragged
    prompts, every scored token's replayed log-prob is the sampler's own log-softmax."""
    errors, rollout = replay_errors(EarlyEOS(tiny(preset), bias=EOS_BIAS), sampler, tokenizer, RAGGED, 16, seed=2)
    completions = rollout.completions
    first_eos = torch.where((completions == EOS).any(1), (completions == EOS).float().argmax(1), 16)
    # the conditions that matter: rows stop at different places, some before the last block
    # (4 tokens), and decoding ended before revealing everything
    assert len(set(first_eos.tolist())) > 2 and bool((first_eos < 12).any())
    assert bool((completions == rollout.mask_id).any())
    assert float(errors.max()) < 1e-5


def test_the_value_model_reads_the_samplers_states(tokenizer):
    """The value replay reads the states the sampler decoded from: a token's value is the value
    model's output at its position in the sampler's own input at the step that revealed it."""
    recorder = Recorder(EarlyEOS(tiny("llada_tiny"), bias=EOS_BIAS))
    sampler = LLaDASampler(steps=16, block_length=4, temperature=1.0)
    rollout = sampled_rollout(recorder, sampler, tokenizer, RAGGED, gen_length=16, eos_id=EOS)
    value_model = value_model_for(tiny("llada_tiny")).eval()
    torch.nn.init.normal_(value_model.value_head.weight)  # a zero head would read 0 anywhere
    p = rollout.prompt_length
    with torch.no_grad():
        values = TraceEstimator().gather(value_model, rollout, "values")
        forwards = step_forwards(recorder, rollout)
        for row, j in rollout.scored.nonzero().tolist():
            call, index = forwards[row][int(rollout.step_map[row, j])]
            state = recorder.inputs[call][index : index + 1]
            expected = value_model(state, attention_mask=rollout.attention_mask[row : row + 1]).values[0, p + j]
            assert float(values[row, j]) == pytest.approx(float(expected), abs=1e-5)
