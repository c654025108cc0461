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


RAGGED = ["12+345=", "7+8=", "123+4="]
# one prompt length: every block model's node ends in its overhang, the leaves decode less than G/2
EVEN = ["12+3=", "45+6=", "7+80="]  # 5 tokens: a node of 4 + 3 ends 1 before G = 8


@pytest.mark.parametrize(
    "family, sampler_name, options, prompts",
    [("llada_tiny", "llada", {"steps": 8, "block_length": 4}, RAGGED),
     ("llada_tiny", "fast_dllm", {"block_length": 4}, RAGGED),
     ("dream_tiny", "dream", {}, RAGGED), ("dream_tiny", "diffusion", {"block_length": 4, "cache": "dual"}, RAGGED),
     ("sdar_tiny", "sdar", {"denoising_steps": 2}, RAGGED), ("sdar_tiny", "diffusion", {"cache": "block"}, RAGGED),
     ("sdar_tiny", "sdar", {"denoising_steps": 2}, EVEN), ("sdar_tiny", "diffusion", {"cache": "block"}, EVEN)],
)  # fmt: skip
def test_leaves_share_their_node_tokens_and_steps_exactly(family, sampler_name, options, prompts, tokenizer):
    """Shipped defaults (stop_at_eos on), ragged prompts of odd lengths, temperature 1."""
    model = tiny(family)
    sampler = dllm.build_sampler(sampler_name, temperature=1.0, **options)
    gen_length, branches, half = 8, 3, 4
    check_tree(sampler, model.block_size, gen_length, branches, 2 * branches)
    decoded, branch_step = decode_tree(
        model, tokenizer, sampler, prompts, gen_length, torch.Generator().manual_seed(0), branches, torch.device("cpu")
    )
    out = decoded.output
    raw, steps = out.raw_completions, out.step_map
    if out.overhang is not None:  # a block model's node may end in its overhang: compare the whole trajectory
        raw, steps = torch.cat([raw, out.overhang], 1), torch.cat([steps, out.overhang_steps], 1)
    assert out.raw_completions.shape == (len(prompts) * branches, gen_length)
    shared = (steps >= 0) & (steps < branch_step[:, None])  # revealed in the node
    assert shared[:, :half].all()  # a node decodes at least the first half ...
    if model.block_size is None:
        assert not shared[:, half:].any()  # ... and, full attention, only that
    else:  # ... to the end of the block holding the G/2-th token, counted from each row's position 0
        ends = (decoded.prompt_mask.sum(1) + half + model.block_size - 1) // model.block_size * model.block_size
        assert (shared.sum(1) == ends - decoded.prompt_mask.sum(1)).all()
    view = (len(prompts), branches, -1)
    nodes, node_steps, node_shared = raw.view(view), steps.view(view), shared.view(view)
    assert (node_shared == node_shared[:, :1]).all()  # every leaf of a node shares the same places ...
    assert ((nodes == nodes[:, :1]) | ~node_shared).all()  # ... the same tokens ...
    assert ((node_steps == node_steps[:, :1]) | ~node_shared).all()  # ... revealed at the same steps
    nodes = out.raw_completions.view(view)
    # each prompt's node is the prompt's own (left padding undone), and leaves differ after the branch
    texts = tokenizer.batch_decode(decoded.prompt_ids, skip_special_tokens=True)
    assert texts == [p for p in prompts for _ in range(branches)]
    assert not (nodes[:, :, half:] == nodes[:, :1, half:]).all(), "the branches drew the same noise"


def test_trees_that_do_not_fit_are_refused_with_the_reason():
    with pytest.raises(ConfigError, match="whole sampler blocks"):
        check_tree(dllm.build_sampler("llada", steps=8, block_length=8), None, 8, 2, 4)
    # a block model decoding one block of 8 (the fair ablation's addition at block 8): the node's
    # half ends inside the only block, which the node would finish: no leaf had anything left
    with pytest.raises(ConfigError, match=r"whole sampler blocks \(block_length 8, the model's blocks 4\)"):
        check_tree(dllm.build_sampler("sdar", block_length=8, denoising_steps=8), 4, 8, 4, 8)
    with pytest.raises(ConfigError, match="whole sampler blocks"):
        check_tree(dllm.build_sampler("diffusion", cache="block"), 8, 8, 2, 4)  # blocks from the model only
    with pytest.raises(ConfigError, match="divide algorithm.group_size"):
        check_tree(dllm.build_sampler("llada", steps=8, block_length=4), None, 8, 4, 6)
