"""Regression against outputs recorded from JetAstra/SDAR's `block_diffusion_generate` (see
tests/fixtures/sdar_reference/README.md) on an `sdar_tiny` fixture with its exact block KV cache: every
remasking strategy, 1/2/4 denoising steps, categorical sampling at temperature 1 and 0.7 with top-k/top-p,
prompts that fill whole blocks and prompts that end inside one. Token for token.

The reference cannot decode greedily (temperature 0 divides the logits by zero and `torch.multinomial`
then refuses the NaN probabilities), so only sampled decoding is recorded. Cases whose reference run
went through a behaviour dllm does not copy (`DIFFERENCES`) are strict xfails.
"""

import json
from pathlib import Path

import pytest
import torch

import dllm
from tests.unit.samplers.references import NeverPredictsMask, case_id, marked

FIXTURE = Path(__file__).parents[2] / "fixtures" / "sdar_reference"
RECORD = json.loads((FIXTURE / "cases.json").read_text())
EOS = 1

# Reference behaviours dllm does not reproduce, with lines of JetAstra/SDAR generate.py (c2041a8):
# - prompt_tail_shares_first_block: with a prompt length P that is not a multiple of block_length, the
#   reference keeps positions from 0 without padding: it prefills P // block_length whole blocks (l. 92-106)
#   and decodes the block holding the prompt's tail in place, tail and masks together, up to the end of the
#   block that holds P + gen_length (l. 79-81: more than gen_length tokens). dllm left-pads the prompt to
#   whole blocks (padding masked out), so blocks and RoPE positions are shifted against the reference's.
# - quota_above_masked_count_rewrites_revealed_tokens (a bug of the reference, not copied): static and
#   dynamic remasking call topk(confidence, num_transfer_tokens[step]) (l. 164-165, 177-178) even when fewer
#   positions are masked (after a dynamic step that revealed more than its quota, or in a block that starts
#   with prompt tokens); topk then also picks -inf positions and l. 196 overwrites those revealed tokens, even
#   prompt tokens, with freshly sampled ones. dllm caps the quota at the masked count. Flagged only where
#   the capped reference gives other tokens.
# - entropy_of_sampled_token_probabilities (a bug of the reference, not copied): the entropy_bounded branch
#   (l. 180-190) never initialises transfer_index (UnboundLocalError on its first step; recorded with that
#   one line added), and its "entropy" is -sum p log p over the block of the sampled tokens' probabilities
#   x0_p: one number per row, equal at every masked position, so it reveals the leftmost k masked positions
#   (k: how many multiples of that number stay below eb_threshold, at least one). dllm sums each position's
#   entropy over the vocabulary and reveals the lowest-entropy positions within eb_threshold.
DIFFERENCES = {
    "prompt_tail_shares_first_block": "reference decodes the prompt's partial last block in place; dllm left-pads "
    "the prompt to whole blocks",
    "quota_above_masked_count_rewrites_revealed_tokens": "reference topk quota above the masked count overwrites "
    "revealed tokens (bug, not copied)",
    "entropy_of_sampled_token_probabilities": "reference entropy_bounded uses one block-level entropy of the sampled "
    "tokens' probabilities (bug, not copied)",
}


@pytest.fixture(scope="module")
def model():
    return NeverPredictsMask(dllm.load_model(FIXTURE).eval())


def decode(model, case, stop_at_eos=False):
    sampler = dllm.build_sampler(
        "sdar",
        block_length=case["block_length"],
        denoising_steps=case["denoising_steps"],
        remasking_strategy=case["remasking_strategy"],
        confidence_threshold=case["confidence_threshold"],
        eb_threshold=case["eb_threshold"],
        temperature=case["temperature"],
        top_k=case["top_k"],
        top_p=case["top_p"],
        stop_at_eos=stop_at_eos,
    )
    prompt_ids = torch.tensor([RECORD["prompts"][case["prompt"]]])
    generator = torch.Generator().manual_seed(case["seed"])
    return sampler.generate(model, prompt_ids, gen_length=case["gen_length"], generator=generator)


def requested(case):
    """The prompt and the gen_length tokens asked for (the reference may decode to the end of a block)."""
    return case["expected"][: len(RECORD["prompts"][case["prompt"]]) + case["gen_length"]]


@pytest.mark.parametrize("case", marked(RECORD["cases"], DIFFERENCES))
def test_reproduces_sdar_token_for_token(model, case):
    assert decode(model, case).sequences[0].tolist() == requested(case)


EOS_CASES = [
    case
    for case in RECORD["cases"]
    if EOS in requested(case)[len(RECORD["prompts"][case["prompt"]]) :]
    and not set(case["reference_quirks"]) & set(DIFFERENCES)
]


@pytest.mark.parametrize("case", EOS_CASES, ids=case_id)
def test_stopping_at_eos_keeps_the_reference_tokens_up_to_it(model, case):
    """The recording decoded past EOS (stopping_criteria_idx=None); stopping changes nothing before it."""
    sequence = decode(model, case, stop_at_eos=True).sequences[0].tolist()
    first_eos = case["expected"].index(EOS, len(RECORD["prompts"][case["prompt"]]))
    assert sequence[: first_eos + 1] == case["expected"][: first_eos + 1]
    assert set(sequence[first_eos:]) == {EOS}


def test_the_record_covers_every_strategy_and_sampling_setting():
    cases = RECORD["cases"]
    strategies = {c["remasking_strategy"] for c in cases}
    assert strategies == {"sequential", "low_confidence_static", "low_confidence_dynamic", "entropy_bounded"}
    assert {c["denoising_steps"] for c in cases} == {1, 2, 4}
    assert {(c["temperature"], c["top_k"], c["top_p"]) for c in cases} == {(1.0, 0, 1.0), (0.7, 5, 0.9)}
    assert {c["block_length"] for c in cases} == {json.loads((FIXTURE / "config.json").read_text())["block_size"]}
    assert {len(p) % 4 == 0 for p in RECORD["prompts"]} == {True, False}
    assert EOS_CASES
