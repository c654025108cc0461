"""SPG's block-wise masking: the views' shape, and the ELBO / EUBO computed by hand."""

import math

import pytest
import torch

import dllm
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError


def full_attention_rollout(scored: torch.Tensor, prompt_length: int = 3) -> Rollout:
    rows, length = scored.shape
    rollout = Rollout.__new__(Rollout)
    rollout.sequences = torch.zeros(rows, prompt_length + length, dtype=torch.long)
    rollout.attention_mask = torch.ones(rows, prompt_length + length, dtype=torch.long)
    rollout.attention_mask[0, 0] = 0  # a left-padded prompt
    rollout.step_map = torch.zeros(rows, length, dtype=torch.long)
    rollout.scored, rollout.prompt_length, rollout.block_size = scored, prompt_length, None
    return rollout


def test_each_view_is_a_block_decoding_state():
    # 7 scored tokens (EOS at 6) of 8, blocks of 2: blocks 0-3 hold scored tokens
    scored = torch.tensor([[True] * 7 + [False]]).expand(400, -1)
    estimator = dllm.build("estimator", "block_mask", num_masks=2, block_length=2, p_mask_prompt=0.0)
    plan = estimator.plan(full_attention_rollout(scored), torch.Generator().manual_seed(0))
    masked, prompt_masked = plan["masked"], plan["prompt_masked"]
    assert masked.shape == (400, 2, 8) and not prompt_masked.any()
    assert masked[:, :, 7].all()  # after the first EOS: always masked
    blocks = torch.arange(8) // 2
    chosen = []
    for row in range(400):
        for view in range(2):
            state = masked[row, view, :7]
            first = int(state.nonzero()[0]) // 2  # the chosen block: earlier blocks are clean
            assert not state[blocks[:7] < first].any() and state[blocks[:7] > first].all()
            in_block = state[blocks[:7] == first]
            assert 1 <= int(in_block.sum()) <= len(in_block)  # U{1..n} of its n scored tokens
            chosen.append(first)
        assert chosen[-1] != chosen[-2]  # distinct blocks while the row has at least num_masks
    counts = torch.bincount(torch.tensor(chosen), minlength=4).float() / len(chosen)
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.05)  # uniform over the row's blocks
    # one-token last block (position 6): always fully masked when chosen; 2-token blocks: 1 or 2, half each
    two = [int(masked[r, v, 2 * b : 2 * b + 2].sum()) for r in range(400) for v in range(2)
           for b in [chosen[2 * r + v]] if b < 3]  # fmt: skip
    assert abs(sum(c == 1 for c in two) / len(two) - 0.5) < 0.05


def test_the_prompt_and_the_earlier_blocks_are_masked_with_p_mask_prompt():
    scored = torch.ones(2000, 8, dtype=torch.bool)
    estimator = dllm.build("estimator", "block_mask", num_masks=1, block_length=4, p_mask_prompt=0.3)
    plan = estimator.plan(full_attention_rollout(scored), torch.Generator().manual_seed(1))
    masked, prompt_masked = plan["masked"][:, 0], plan["prompt_masked"][:, 0]
    assert not prompt_masked[0, 0]  # the padding is never masked
    assert abs(prompt_masked[1:].float().mean().item() - 0.3) < 0.02
    second = masked[:, 4:].sum(1) < 4  # the second block was chosen (the first would mask it whole)
    assert abs(masked[second, :4].float().mean().item() - 0.3) < 0.03


def scripted_views(estimator, views):
    estimator.views = lambda model, rollout, plan: iter(views)
    return estimator


# One row of 4 scored tokens (and one after EOS), two views:
# view 1 masks tokens 0, 1 (t = 1/2) with log-probs -1, -2; view 2 masks 1, 2, 3 (t = 3/4) with -0.5, -1.5, -3.
SCORED = torch.tensor([[True, True, True, True, False]])
VIEWS = [
    (torch.tensor([[-1.0, -2.0, -9.0, -9.0, -9.0]]), torch.tensor([[True, True, False, False, False]])),
    (torch.tensor([[-9.0, -0.5, -1.5, -3.0, -9.0]]), torch.tensor([[False, True, True, True, False]])),
]
ELBO = ((-1 - 2) / 2 + (-0.5 - 1.5 - 3) / 3) / 2  # -1.5833: the mean over views of the masked tokens' mean
# EUBO, beta 1.5: per token (1/b) log((1/K) sum_k p^b / t_k) over the views masking it, then the mean over tokens
EUBO_TOKENS = [-1.0, -0.6724569208448563, -1.7703100720721097, -3.27031007207211]
EUBO = -1.678269266247269


def test_the_bounds_by_hand():
    estimator = scripted_views(dllm.build("estimator", "block_mask", num_masks=2, eubo_beta=1.5), VIEWS)
    rollout = full_attention_rollout(SCORED)
    lower, upper = estimator.bounds(None, rollout, {})
    assert lower[0, :4].mean().item() == pytest.approx(ELBO) and lower[0, 4] == 0
    assert upper[0, :4].tolist() == pytest.approx(EUBO_TOKENS) and upper[0, 4] == 0
    assert upper[0, :4].mean().item() == pytest.approx(EUBO)
    assert EUBO_TOKENS[1] == pytest.approx(math.log((math.exp(-3) / 0.5 + math.exp(-0.75) / 0.75) / 2) / 1.5)
    # the ELBO alone, one view per part, each carrying 1/K of the estimate
    estimator.upper_bound = False
    parts = list(estimator.chunks(None, rollout, {}))
    assert [part[2]["share"].item() for part in parts] == [0.5, 0.5]
    assert sum(part[0] for part in parts)[0, :4].mean().item() == pytest.approx(ELBO)
    assert estimator.log_probs(None, rollout, {})[0][0, :4].mean().item() == pytest.approx(ELBO)


@pytest.mark.parametrize("options", [{"num_masks": 0}, {"t_min": 0.8, "t_max": 0.2}, {"eubo_beta": 0.0},
                                     {"p_mask_prompt": 1.0}])  # fmt: skip
def test_bad_settings_are_refused(options):
    with pytest.raises(ConfigError, match="block_mask: need"):
        dllm.build("estimator", "block_mask", **options)


def test_block_models_draw_views_in_each_rows_own_blocks_with_eos_stopping(tokenizer):
    """sdar_tiny (block 4), prompts of 7 and 4 tokens, a policy that stops early (EOS stopping on):
    the views' blocks are each row's own (the first completion block is 1 and 4 tokens wide), every
    position after a row's first EOS is masked, and the ELBO is the views' masked-token means."""
    from dllm.samplers.sdar import SDARSampler
    from tests.unit.algorithms.rl_helpers import EarlyEOS, sampled_rollout, tiny

    model = EarlyEOS(tiny("sdar_tiny"), bias=2.0)
    rollout = sampled_rollout(model, SDARSampler(denoising_steps=4), tokenizer, gen_length=12, eos_id=1)
    assert rollout.scored.sum(1).tolist() != [12, 12]  # a row stopped before the end
    estimator = dllm.build("estimator", "block_mask", num_masks=3, p_mask_prompt=0.0)
    assert estimator.blocks(rollout).tolist() == [[0] + [1] * 4 + [2] * 4 + [3] * 3, [0] * 4 + [1] * 4 + [2] * 4]
    plan = estimator.plan(rollout, torch.Generator().manual_seed(0))
    blocks = estimator.blocks(rollout)
    for row in range(2):
        for view in range(3):
            state = plan["masked"][row, view]
            assert state[~rollout.scored[row]].all()
            first = int(blocks[row][state & rollout.scored[row]].min())
            assert not state[blocks[row] < first].any() and state[blocks[row] > first].all()
    with torch.no_grad():
        lower, upper = estimator.bounds(model, rollout, plan)
        views = list(estimator.views(model, rollout, plan))
    assert torch.isfinite(lower).all() and torch.isfinite(upper).all()
    for row in range(2):
        means = [log_probs[row][masked[row]].mean() for log_probs, masked in views]
        by_hand = sum(means) / 3
        assert lower[row][rollout.scored[row]].mean().item() == pytest.approx(by_hand.item(), abs=1e-5)
