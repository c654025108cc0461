"""IGPO's inpainting (dllm.algorithms.inpainting), by hand: which chunks are given where, which
groups are inpainted, which rows are replaced, and which given tokens enter the loss."""

import json
from types import SimpleNamespace

import pytest
import torch

import dllm
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.inpainting import Inpainting
from dllm.algorithms.rl import RL
from dllm.algorithms.rollout import rollout_from_output
from dllm.data.base import Example, Task
from dllm.rewards.base import Reward
from dllm.samplers.base import GenerationOutput
from dllm.trainer import Components, Stage, Trainer, TrainerConfig

M, EOS, PAD = 99, 2, 0  # mask, EOS and pad ids of the hand-made rollouts


class Scripted:
    """A `random.Random` stand-in that returns the draws written in the test."""

    def __init__(self, randints=(), samples=(), uniforms=()):
        self.randints, self.samples, self.uniforms = list(randints), list(samples), list(uniforms)

    def randint(self, low, high):
        value = self.randints.pop(0)
        assert low <= value <= high
        return value

    def sample(self, population, k):
        value = self.samples.pop(0)
        assert len(value) == k and set(value) <= set(population)
        return value

    def uniform(self, low, high):
        return self.uniforms.pop(0)


REFERENCE = [11, 12, 13, 14, 15, 16, 17, 18, 19]


def test_the_canvas_reveals_the_drawn_chunks_and_the_last_at_their_own_offsets():
    inpainting = Inpainting(min_chunk=2, max_chunk=3, free_tokens=2)
    # G = 10, 2 free: the reference's first 8 tokens, in chunks of 3, 2, 2; the 4th draw (3) leaves a
    # 1-token tail, shorter than min_chunk: dropped. ratio 0.4: int(3 x 0.6) = 1 chunk hidden.
    first = inpainting.canvas(REFERENCE, 10, 0.4, Scripted(randints=[3, 2, 2, 3], samples=[[0]]), M)
    assert first.tolist() == [M, M, M, 14, 15, 16, 17, M, M, M]
    # the last chunk hidden by the draw is revealed all the same (the reference's inpaint_last_chunk_end)
    last = inpainting.canvas(REFERENCE, 10, 0.4, Scripted(randints=[3, 2, 2, 3], samples=[[2]]), M)
    assert last.tolist() == [11, 12, 13, 14, 15, 16, 17, M, M, M]
    # ratio 0: int(3 x 1) = 3 hidden, the last shown; the paper's free tail: 30 tokens of 10, nothing given
    none = inpainting.canvas(REFERENCE, 10, 0.0, Scripted(randints=[3, 2, 2, 3], samples=[[0, 1, 2]]), M)
    assert none.tolist() == [M] * 5 + [16, 17] + [M] * 3
    assert Inpainting().canvas(REFERENCE, 10, 0.6, Scripted(), M).tolist() == [M] * 10


def test_the_ratios_are_sorted_and_only_all_wrong_groups_are_inpainted():
    inpainting = Inpainting(max_replacements=2)
    assert inpainting.ratios(3, Scripted(uniforms=[0.5, 0.2, 0.3])) == [0.2, 0.3, 0.5]
    assert inpainting.failing_groups(torch.tensor([0.0, 0.0, 1.0, 0.5, 0.9, 0.0]), 2) == [0, 2]
    # correct: rows 0, 2, 3; more than 2, so 2 are drawn (here 3 and 0), in order
    assert inpainting.replacements(torch.tensor([1.0, 0.0, 1.0, 1.0]), Scripted(samples=[[3, 0]])) == [0, 3]
    assert inpainting.replacements(torch.tensor([0.0, 1.0, 0.0, 0.0]), Scripted()) == [1]


def hand_rollout(completions, step_map, rewards, group_size=2):
    prompts = torch.tensor([[5, 6]] * len(completions))
    output = GenerationOutput(torch.cat([prompts, torch.tensor(completions)], 1), torch.tensor(step_map), nfe=1)
    model = SimpleNamespace(mask_token_id=M)
    rollout = rollout_from_output(model, prompts, torch.ones_like(prompts), output, EOS, group_size)
    rollout.rewards = torch.tensor(rewards)
    return rollout


class Peaked(torch.nn.Module):
    """Logits flat (highest entropy) at completion position 1, peaked elsewhere."""

    shift_logits, block_size = False, None

    def forward(self, ids, attention_mask=None):
        logits = torch.zeros(*ids.shape, 100)
        logits[:, :, 7] = 10.0
        logits[:, 3, 7] = 0.0  # column 3 = completion position 1 (after a 2-token prompt)
        return SimpleNamespace(logits=logits)


def test_a_failing_groups_correct_inpainted_rows_replace_its_first_rows_and_the_top_entropy_given_tokens_train():
    # two groups of 2: group 0 has a correct row, group 1 is all wrong
    rollout = hand_rollout([[21, 22, 23, EOS], [24, EOS, M, M], [25, 26, EOS, M], [27, 28, 29, 30]],
                           [[0, 1, 2, 3], [0, 1, 2, 2], [1, 0, 2, 3], [3, 2, 1, 0]], [1.0, 0.0, 0.0, 0.0])  # fmt: skip
    seen = {}

    def decode(examples, canvas):  # group 1's prompt, 2 canvases; row 1 of them is correct
        seen.update(prompts=[e.prompt for e in examples], canvas=canvas)
        return hand_rollout([[11, 40, 13, EOS], [11, 12, 13, EOS]], [[-1, 0, -1, 1], [-1, -1, -1, 0]], [0.0, 1.0])

    inpainting = Inpainting(ratio_low=0.5, ratio_high=0.5, min_chunk=1, max_chunk=1, free_tokens=0, loss_share=0.5)
    examples = [Example("a", "x"), Example("b", "y")]
    tokenizer = SimpleNamespace(encode=lambda text, **_: [11, 12, 13], eos_token_id=EOS, pad_token_id=PAD)
    rng = Scripted(uniforms=[0.5, 0.5], randints=[1, 1, 1, 1, 1, 1], samples=[[1], [0]])
    result, metrics = inpainting.rescue(rollout, examples, 2, decode, Peaked(), tokenizer, rng)
    assert seen["prompts"] == ["b"]
    # chunks [11], [12], [13]; int(3 x 0.5) = 1 hidden: 12 in the first canvas, 11 in the second
    assert seen["canvas"].tolist() == [[11, M, 13, M], [M, 12, 13, M]]
    assert metrics == {"inpainted_groups": 1.0, "inpainted_rows": 1.0}
    # row 2 (group 1's first) is the correct inpainted completion; the others are kept
    assert result.completions.tolist() == [[21, 22, 23, EOS], [24, EOS, M, M], [11, 12, 13, EOS], [27, 28, 29, 30]]
    assert result.rewards.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert result.group.tolist() == [0, 0, 1, 1]
    assert result.step_map[2].tolist() == [-1, -1, -1, 0]
    # given: positions 0, 1, 2; int(3 x 0.5) = 1 in the loss, the highest-entropy one (position 1); EOS decoded
    assert result.scored[2].tolist() == [False, True, False, True]
    assert result.scored[[0, 1, 3]].tolist() == rollout.scored[[0, 1, 3]].tolist()


def test_igpo_refuses_a_task_without_reference_answers_and_given_tokens_in_the_trace_replay():
    empty = SimpleNamespace(eval_examples=lambda: [Example("1+1=", "")])
    with pytest.raises(dllm.DllmError, match="gives none \\(an empty `response`\\)"):
        Inpainting().check(empty)
    with pytest.raises(dllm.DllmError, match="the trace estimator replays the sampler's steps"):
        RL(estimator=TraceEstimator(), inpainting=Inpainting())
    RL(estimator=TraceEstimator(), inpainting=Inpainting(loss_share=0.0))  # given tokens out of the loss: fine
    assert dllm.build("algorithm", "igpo").inpainting.loss_share == 0.2  # IGPO's own estimator: one_step


class FixedSum(Task):
    """One prompt, `7+8=`, whose reference answer is `15`."""

    gen_length = 4

    def train_example(self, rng):
        return Example("7+8=", "15")

    def eval_examples(self):
        return [Example("7+8=", "15")]


class StartsRight(Reward):
    """1 when the completion starts with the answer: out of reach of an untrained model's own guesses."""

    def __call__(self, prompts, completions, **fields):
        return [float(text.startswith("15")) for text in completions]


def own_rewards(name, tokenizer, tmp_path, rollouts=32, **options):
    """Each rollout's reward of the policy's own completions (before any row is replaced)."""
    tmp_path.mkdir()
    torch.manual_seed(0)
    model = dllm.load_model("llada_tiny").train()
    algorithm = dllm.build("algorithm", name, group_size=4, prompts_per_rollout=4, temperature=1.0,
                           filters={"accuracy_band": None}, **options)  # fmt: skip
    config = TrainerConfig(max_steps=rollouts * algorithm.num_iterations, batch_size=16, lr=1e-2, weight_decay=0.0,
                           warmup_steps=0, min_lr_ratio=1.0, log_every=1, device="cpu", eval_batch_size=4)  # fmt: skip
    parts = Components(model, tokenizer, FixedSum(), dllm.build_sampler("llada", steps=8, block_length=4),
                       StartsRight(), algorithm)  # fmt: skip
    Trainer(parts, [Stage("main", config, algorithm)], tmp_path, 0).run_stage()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return [r["reward"] for r in records if "loss" in r][:: algorithm.num_iterations]


def test_inpainting_learns_an_answer_the_policy_never_finds_alone(tokenizer, tmp_path):
    """Untrained, the policy never starts with `15`: every group is all wrong, GRPO's advantages are
    all 0 and it learns nothing; IGPO's inpainted rows (given `5`, and `1` when drawn, half of each
    group at most) carry the answer into the loss, and the policy's own completions find it."""
    inpainting = {"min_chunk": 1, "max_chunk": 1, "free_tokens": 0, "max_replacements": 2, "loss_share": 1.0}
    igpo = own_rewards("igpo", tokenizer, tmp_path / "igpo", inpainting=inpainting)
    grpo = own_rewards("igpo", tokenizer, tmp_path / "grpo", inpainting=None)
    assert igpo[0] == grpo[0] == 0.0
    # A sign error (the wrong rows replaced, or the advantage flipped) keeps it at 0. The mean over the
    # run, not a late window: at lr 1e-2 the tiny policy finds the answer, then may drift off it once
    # its groups stop being all wrong, at a rollout that moves with the CPU's float rounding
    # (measured: means 0.27 here, AVX2, peak 0.94; the second half's mean 0.85 on another machine, 0.41 here).
    assert sum(igpo) / len(igpo) > 0.1, igpo
    assert sum(grpo) < 0.2, grpo  # alone: a lucky completion or two
