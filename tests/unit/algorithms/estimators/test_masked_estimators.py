"""one_step, coupled and random_mask: what each masks, and the numbers each returns."""

import torch

from dllm.algorithms.estimators.base import masked_completion_log_probs
from dllm.algorithms.estimators.coupled import CoupledEstimator
from dllm.algorithms.estimators.one_step import OneStepEstimator
from dllm.algorithms.estimators.random_mask import RandomMaskEstimator
from dllm.samplers.llada import LLaDASampler
from dllm.samplers.sdar import SDARSampler
from tests.unit.algorithms.rl_helpers import Recorder, sampled_rollout, tiny


def llada_rollout(tokenizer, recorder=None):
    model = recorder or tiny("llada_tiny")
    return model, sampled_rollout(model, LLaDASampler(steps=8, block_length=8, stop_at_eos=False), tokenizer)


def test_one_step_masks_the_completion_and_some_of_the_real_prompt(tokenizer):
    model, rollout = llada_rollout(tokenizer)
    plan = OneStepEstimator(p_mask_prompt=0.5).plan(rollout, torch.Generator().manual_seed(0))
    prompt_mask = rollout.attention_mask[:, : rollout.prompt_length].bool()
    assert not (plan["prompt_masked"] & ~prompt_mask).any()  # never a padding position
    assert plan["prompt_masked"].any() and (prompt_mask & ~plan["prompt_masked"]).any()
    recorder = Recorder(model)
    OneStepEstimator().log_probs(recorder, rollout, plan)
    (seen,) = recorder.inputs
    assert (seen[:, rollout.prompt_length :] == rollout.mask_id).all()
    assert torch.equal(seen[:, : rollout.prompt_length] == rollout.mask_id, plan["prompt_masked"])


def test_one_step_never_touches_the_global_random_state(tokenizer):
    _, rollout = llada_rollout(tokenizer)
    before = torch.get_rng_state()
    first = OneStepEstimator(0.3).plan(rollout, torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(
        first["prompt_masked"], OneStepEstimator(0.3).plan(rollout, torch.Generator().manual_seed(4))["prompt_masked"]
    )


def test_coupled_views_are_complementary_and_weighted_by_hand(tokenizer):
    recorder = Recorder(tiny("llada_tiny"))
    _, rollout = llada_rollout(tokenizer, recorder)
    recorder.calls.clear()
    estimator = CoupledEstimator(full_mask_term=True)
    plan = estimator.plan(rollout, torch.Generator().manual_seed(1))
    assert ((plan["t"] >= 0.2) & (plan["t"] <= 0.8)).all()
    with torch.no_grad():
        estimate, scored = estimator.log_probs(recorder, rollout, plan)
    in_mask, in_complement, full = (inputs[:, rollout.prompt_length :] == rollout.mask_id for inputs in recorder.inputs)
    assert torch.equal(in_mask, plan["masked"]) and torch.equal(in_complement, ~plan["masked"])
    assert (in_mask ^ in_complement).all() and full.all()  # each token masked in exactly one coupled view
    completion = rollout.completions
    with torch.no_grad():
        l1 = masked_completion_log_probs(recorder, rollout, completion.masked_fill(plan["masked"], rollout.mask_id))
        l2 = masked_completion_log_probs(recorder, rollout, completion.masked_fill(~plan["masked"], rollout.mask_id))
        l0 = masked_completion_log_probs(recorder, rollout, torch.full_like(completion, rollout.mask_id))
    t = plan["t"][:, None]
    expected = (l0 + torch.where(plan["masked"], l1 / t, l2 / (1 - t))) / 2
    torch.testing.assert_close(estimate, expected)


def test_random_mask_averages_the_views_that_mask_a_token(tokenizer):
    model, rollout = llada_rollout(tokenizer)
    estimator = RandomMaskEstimator(num_masks=3)
    plan = estimator.plan(rollout, torch.Generator().manual_seed(2))
    with torch.no_grad():
        estimate, scored = estimator.log_probs(model, rollout, plan)
        views = [
            masked_completion_log_probs(model, rollout, rollout.completions.masked_fill(plan["masked"][:, v], 2))
            for v in range(3)
        ]
    masks = plan["masked"]
    expected = sum(torch.where(masks[:, v], views[v], 0.0) for v in range(3)) / masks.sum(1).clamp(min=1)
    torch.testing.assert_close(estimate, expected)
    assert torch.equal(scored, masks.any(1))


def test_block_models_score_each_block_given_the_clean_blocks_before_it(tokenizer):
    """Blocks are each row's own (from its first real token): with prompts of 7 and 4 tokens the
    second whole completion block is tokens 5-8 of the first row and 4-7 of the second. By hand: the
    row alone, unpadded, its completion clean before that block and masked from it on, with the
    model's own block-causal mask."""
    model = tiny("sdar_tiny")
    rollout = sampled_rollout(model, SDARSampler(denoising_steps=4, stop_at_eos=False), tokenizer, gen_length=12)
    with torch.no_grad():
        packed, _ = OneStepEstimator(p_mask_prompt=0.0).log_probs(
            model, rollout, OneStepEstimator(0.0).plan(rollout, torch.Generator())
        )
        p = rollout.prompt_length
        for row, first in ((0, 5), (1, 4)):
            prompt = rollout.sequences[row, :p][rollout.attention_mask[row, :p].bool()]
            assert (len(prompt) + first) % 4 == 0
            completion = rollout.completions[row]
            masks = torch.full((12 - first,), rollout.mask_id)
            inputs = torch.cat([prompt, completion[:first], masks])[None]
            logits = model(inputs).logits[0, len(prompt) + first : len(prompt) + first + 4]
            by_hand = logits.float().log_softmax(-1).gather(-1, completion[first : first + 4, None]).squeeze(-1)
            torch.testing.assert_close(packed[row, first : first + 4], by_hand, atol=2e-5, rtol=1e-5)


def test_masked_estimators_train_on_the_completions_as_read(tokenizer):
    """What decoding left after a stopped row's EOS (masks where the row left the batch, or tokens it
    revealed while other rows went on) is not part of the x_0 a masked estimator trains on: it reads
    EOS there, as a reference that decodes every position mostly does."""
    from dllm.algorithms.rollout import rollout_from_output
    from tests.unit.algorithms.rl_helpers import EarlyEOS

    model = EarlyEOS(tiny("llada_tiny"), bias=3.0)
    batch = tokenizer(["12+345=", "7+8=", "99*9=1", "1="], padding=True, return_tensors="pt")
    out = LLaDASampler(steps=16, block_length=4, temperature=1.0).generate(
        model, batch["input_ids"], batch["attention_mask"], 16, torch.Generator().manual_seed(0)
    )
    rollout = rollout_from_output(model, batch["input_ids"], batch["attention_mask"], out, eos_id=1)
    after_eos = ~rollout.scored
    assert bool((rollout.completions[after_eos] == rollout.mask_id).any())  # rows left with masks after EOS
    assert bool((rollout.completions_as_read()[after_eos] == 1).all())
    # the same rollout with other tokens after each EOS: every estimate is unchanged
    noise = torch.randint(4, 100, rollout.completions.shape)
    other = rollout.map_rows(lambda tensor: tensor)
    other.sequences = rollout.sequences.clone()
    other.sequences[:, rollout.prompt_length :] = torch.where(after_eos, noise, rollout.completions)
    for estimator in (OneStepEstimator(0.3), CoupledEstimator(), RandomMaskEstimator()):
        plan = estimator.plan(rollout, torch.Generator().manual_seed(2))
        with torch.no_grad():
            first, scored = estimator.log_probs(model, rollout, plan)
            second, _ = estimator.log_probs(model, other, plan)
        assert torch.equal(first[scored], second[scored]), type(estimator).__name__
