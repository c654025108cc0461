"""d-TreeRPO: the tree advantage by hand, and tree rollouts that share their nodes exactly."""

import pytest
import torch

import dllm
from dllm.algorithms.advantages.tree import TreeAdvantage
from dllm.algorithms.rollout import Rollout
from dllm.algorithms.tree_rollout import check_tree, decode_tree
from dllm.errors import ConfigError
from tests.unit.algorithms.rl_helpers import tiny


def tree_rollout(rewards, step_map, branch_step, branches) -> Rollout:
    rows, width = step_map.shape
    return Rollout(
        sequences=torch.zeros(rows, 1 + width, dtype=torch.long), attention_mask=torch.ones(rows, 1 + width),
        step_map=step_map, scored=torch.ones(rows, width, dtype=torch.bool), group=torch.zeros(rows),
        rewards=torch.tensor(rewards), truncated=torch.zeros(rows, dtype=torch.bool), prompt_length=1,
        block_size=None, mask_id=0, branch_step=branch_step, branches=branches,
    )  # fmt: skip


def test_tree_advantages_by_hand():
    # One prompt, 2 nodes x 3 leaves. Leaves A: 1, 0, 0.5 (node value 0.5); B: 0.2, 0.2, 0.5 (0.3).
    # Leaf advantage: reward - mean of its 2 siblings: 1 - 0.25 = 0.75, 0 - 0.75 = -0.75, 0.5 - 0.5 = 0;
    # 0.2 - 0.35 = -0.15 (twice), 0.5 - 0.2 = 0.3. Node advantage: 0.5 - 0.3 = 0.2, 0.3 - 0.5 = -0.2,
    # carried 1/3 by each of its 3 leaf rows. Tokens revealed before step 2 are the node's.
    step_map = torch.tensor([[0, 1, 2, 3]] * 3 + [[1, 0, 3, 2]] * 3)
    rollout = tree_rollout([1.0, 0.0, 0.5, 0.2, 0.2, 0.5], step_map, torch.full((6,), 2), 3)
    TreeAdvantage().compute(rollout, 6, None)
    a, b = 0.2 / 3, -0.2 / 3
    expected = torch.tensor([
        [a, a, 0.75, 0.75], [a, a, -0.75, -0.75], [a, a, 0.0, 0.0],
        [b, b, -0.15, -0.15], [b, b, -0.15, -0.15], [b, b, 0.3, 0.3],
    ])  # fmt: skip
    assert torch.allclose(rollout.advantages, expected, atol=1e-6)


def test_a_node_without_siblings_is_credited_against_zero_as_the_reference():
    # One node, leaves 1 and 0: the node's value 0.5 has no sibling mean to subtract (the reference's
    # single tree per prompt), halved over its 2 rows; the leaves +-1.
    rollout = tree_rollout([1.0, 0.0], torch.tensor([[0, 1], [0, 1]]), torch.tensor([1, 1]), 2)
    TreeAdvantage().compute(rollout, 2, None)
    assert torch.allclose(rollout.advantages, torch.tensor([[0.25, 1.0], [0.25, -1.0]]))


def test_the_tree_advantage_needs_tree_rollouts():
    with pytest.raises(ConfigError, match="set algorithm.tree_branches"):
        dllm.build("algorithm", "rl", advantage=TreeAdvantage())


@pytest.mark.parametrize(
    "family, sampler_name, options",
    [("llada_tiny", "llada", {"steps": 8, "block_length": 4}), ("llada_tiny", "fast_dllm", {"block_length": 4}),
     ("dream_tiny", "dream", {}), ("dream_tiny", "diffusion", {"block_length": 4, "cache": "dual"})],
)  # fmt: skip
def test_leaves_share_their_node_tokens_and_steps_exactly(family, sampler_name, options, tokenizer):
    """Shipped defaults (stop_at_eos on), ragged prompts of odd lengths, temperature 1."""
    model = tiny(family)
    sampler = dllm.build_sampler(sampler_name, temperature=1.0, **options)
    gen_length, branches, half = 8, 3, 4
    check_tree(sampler, model.block_size, gen_length, branches, 2 * branches)
    prompts = ["12+345=", "7+8=", "123+4="]
    decoded, branch_step = decode_tree(
        model, tokenizer, sampler, prompts, gen_length, torch.Generator().manual_seed(0), branches, torch.device("cpu")
    )
    raw, steps = decoded.output.raw_completions, decoded.output.step_map
    assert raw.shape == (len(prompts) * branches, gen_length)
    nodes = raw.view(len(prompts), branches, -1)
    node_steps = steps.view(len(prompts), branches, -1)
    assert (nodes[:, :, :half] == nodes[:, :1, :half]).all()  # the shared half: the same tokens ...
    assert (node_steps[:, :, :half] == node_steps[:, :1, :half]).all()  # ... revealed at the same steps
    assert (steps[:, :half] < branch_step[:, None]).all() and (steps[:, half:] >= branch_step[:, None]).all()
    # each prompt's node is the prompt's own (left padding undone), and leaves differ after the branch
    texts = tokenizer.batch_decode(decoded.prompt_ids, skip_special_tokens=True)
    assert texts == [p for p in prompts for _ in range(branches)]
    assert not (nodes[:, :, half:] == nodes[:, :1, half:]).all(), "the branches drew the same noise"


def test_block_models_are_refused_with_the_reason():
    with pytest.raises(ConfigError, match="block diffusion models"):
        check_tree(dllm.build_sampler("sdar"), 4, 8, 2, 4)
    with pytest.raises(ConfigError, match="whole sampler blocks"):
        check_tree(dllm.build_sampler("llada", steps=8, block_length=8), None, 8, 2, 4)
    with pytest.raises(ConfigError, match="divide algorithm.group_size"):
        check_tree(dllm.build_sampler("llada", steps=8, block_length=4), None, 8, 4, 6)
