"""`elbo` (ESPO): exact mask counts stratified over rows, and each token's ELBO term by hand."""

import math
from types import SimpleNamespace

import pytest
import torch

from dllm.algorithms.estimators.elbo import ELBOEstimator
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError
from dllm.samplers.llada import LLaDASampler
from tests.unit.algorithms.rl_helpers import Recorder, sampled_rollout, tiny

MASK = 3


class CountsMasks(torch.nn.Module):
    """A model over tokens {0, 1, 2} (mask 3) that favours token 1 by the number s of masks in the row:
    log p(1) = s - log(e^s + 3), log p(other) = -log(e^s + 3) (4 logits: 1 at s, the rest 0)."""

    mask_token_id, block_size, shift_logits = MASK, None, False

    def forward(self, input_ids, attention_mask=None, **kwargs):
        masks = (input_ids == MASK).sum(1, keepdim=True).float()
        logits = torch.zeros(*input_ids.shape, 4)
        logits[..., 1] = masks
        return SimpleNamespace(logits=logits)


def one_row(completion, scored):
    sequences = torch.tensor([[0, *completion]])
    return Rollout(sequences, torch.ones_like(sequences), torch.zeros(1, len(completion), dtype=torch.long),
                   torch.tensor([scored]), torch.zeros(1), torch.zeros(1), torch.zeros(1, dtype=torch.bool),
                   prompt_length=1, block_size=None, mask_id=MASK)  # fmt: skip


def test_each_tokens_term_by_hand():
    """G = 3, x = 1 mask on the first token. Mask view (s = 1): 4/1 x log p(1); complement (s = 2)
    on tokens 2 and 3: 4/2 x log p; the two views averaged (each token in exactly one)."""
    rollout = one_row([1, 2, 1], [True, True, True])
    plan = {"counts": torch.tensor([[1]]), "masked": torch.tensor([[[True, False, False]]])}
    estimate, scored = ELBOEstimator(num_mc=1).log_probs(CountsMasks(), rollout, plan)
    one, two = math.log(math.e + 3), math.log(math.e**2 + 3)
    assert estimate[0].tolist() == pytest.approx([4 * (1 - one) / 2, 2 * -two / 2, 2 * (2 - two) / 2])
    # = [-1.48734, -2.34075, -0.34075]: the ELBO 4 - 2 log(e + 3) - 2 log(e^2 + 3)
    assert estimate[0].tolist() == pytest.approx([-1.487337, -2.340753, -0.340753], abs=1e-6)
    assert estimate.sum().item() == pytest.approx(-4.168843, abs=1e-6)
    assert scored.all()
    # Without the complement: only the masked token carries a term, 4 x log p(1).
    alone, _ = ELBOEstimator(num_mc=1, coupled=False).log_probs(CountsMasks(), rollout, plan)
    assert alone[0].tolist() == pytest.approx([4 * (1 - one), 0.0, 0.0])


def test_samples_are_averaged_and_tokens_after_eos_carry_no_term():
    """Two samples, x = 0 (all in the complement: 4/3 each, s = 3) and x = 3 (all masked: 4/3 each,
    s = 3): the same term twice. The third token (after EOS) is masked with the rest but unscored."""
    rollout = one_row([1, 2, 1], [True, True, False])
    plan = {"counts": torch.tensor([[0, 3]]), "masked": torch.tensor([[[False] * 3, [True] * 3]])}
    estimate, scored = ELBOEstimator(num_mc=2).log_probs(CountsMasks(), rollout, plan)
    three = math.log(math.e**3 + 3)
    assert estimate[0, :2].tolist() == pytest.approx([4 / 3 * (3 - three) / 2, 4 / 3 * -three / 2], abs=1e-6)
    assert scored[0].tolist() == [True, True, False]


def test_the_terms_are_unbiased_over_the_mask_draws():
    """With a context-free model (log p fixed per token) the expected ELBO is exactly the sum of the
    log-probs: averaged over many plans the estimate approaches it, coupled or not."""
    rollout = one_row([1, 2, 1, 0, 2], [True] * 5)
    rows = rollout.select(torch.zeros(400, dtype=torch.long))  # 400 copies: one plan draws 400 strata

    class ContextFree(CountsMasks):
        def forward(self, input_ids, attention_mask=None, **kwargs):
            return SimpleNamespace(logits=torch.tensor([0.0, 1.0, 2.0, 0.0]).expand(*input_ids.shape, 4))

    log_p = torch.tensor([0.0, 1.0, 2.0, 0.0]).log_softmax(0)[torch.tensor([1, 2, 1, 0, 2])]
    for coupled in (True, False):
        estimator = ELBOEstimator(num_mc=1, coupled=coupled)
        estimate, _ = estimator.log_probs(ContextFree(), rows, estimator.plan(rows, torch.Generator().manual_seed(0)))
        assert estimate.sum(1).mean().item() == pytest.approx(log_p.sum().item(), rel=0.03)


def test_the_plan_masks_exactly_its_counts_stratified_over_rows(tokenizer):
    model = tiny("llada_tiny")
    rollout = sampled_rollout(model, LLaDASampler(steps=8, block_length=8), tokenizer, prompts=["1+2="] * 8)
    before = torch.get_rng_state()
    plan = ELBOEstimator(num_mc=3).plan(rollout, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), before)  # the trainer's generator only
    counts, masked = plan["counts"], plan["masked"]
    assert counts.shape == (8, 3) and masked.shape == (8, 3, 8)
    assert torch.equal(masked.sum(-1), counts)
    # 8 rows over the 9 counts {0..8}: one offset per sample, rows 9/8 counts apart, so no two equal
    for sample in range(3):
        assert len(set(counts[:, sample].tolist())) == 8


def test_one_forward_per_view_and_sample(tokenizer):
    recorder = Recorder(tiny("llada_tiny"))
    rollout = sampled_rollout(recorder, LLaDASampler(steps=8, block_length=8), tokenizer)
    recorder.calls.clear()
    estimator = ELBOEstimator(num_mc=2)
    with torch.no_grad():
        estimator.log_probs(recorder, rollout, estimator.plan(rollout, torch.Generator().manual_seed(1)))
    assert len(recorder.calls) == 4


def test_num_mc_must_be_positive():
    with pytest.raises(ConfigError, match="elbo.num_mc must be >= 1"):
        ELBOEstimator(num_mc=0)
