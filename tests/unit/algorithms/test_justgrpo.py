"""JustGRPO (arXiv 2601.15165, LeapLabTHU/JustGRPO): GRPO on a dLLM run as an autoregressive model.

Its rollouts decode left to right (one-token blocks), and the trace estimator's replay of such a
rollout is the exact AR likelihood JustGRPO's `logprob_loss` computes: token t scored with the
prompt and tokens < t shown and every later position masked."""

import pytest
import torch

import dllm
from dllm.algorithms.advantages.group import GroupAdvantage
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.objectives.base import Scored, token_weights
from dllm.algorithms.objectives.ppo import PPO
from dllm.algorithms.rl_plan import rollout_sampler
from dllm.algorithms.rollout import Rollout
from dllm.algorithms.tally import Tally
from dllm.errors import ConfigError
from tests.unit.algorithms.rl_helpers import EarlyEOS, sampled_rollout, tiny

RAGGED = ("12+345=", "7+8=", "99*9=1", "1=", "314+15=", "2*3=")


def test_the_preset_builds_justgrpos_parts():
    algorithm = dllm.build("algorithm", "justgrpo")
    assert type(algorithm.estimator) is TraceEstimator and algorithm.estimator.shrinkage == 1
    assert type(algorithm.advantage) is GroupAdvantage and type(algorithm.objective) is PPO
    objective = algorithm.objective
    assert (objective.clip_low, objective.clip_high, objective.beta) == (0.2, 0.2, 0.0)
    assert objective.normalisation == "sequence"  # each sequence's token mean, then over sequences
    assert (algorithm.group_size, algorithm.prompts_per_rollout, algorithm.num_iterations) == (16, 64, 1)
    assert algorithm.temperature == 1.0 and algorithm.rollout_block_length.values == [1]


def ar_log_probs(model, rollout: Rollout, row: int) -> torch.Tensor:
    """JustGRPO's likelihood of row `row`, by hand: per token t one forward of the unpadded prompt,
    tokens < t, and masks from t on (a block model: one-token blocks, i.e. causal attention)."""
    p, width = rollout.prompt_length, rollout.step_map.shape[1]
    prompt = rollout.sequences[row, :p][rollout.attention_mask[row, :p].bool()]
    completion = rollout.completions[row]
    values = []
    for t in range(width):
        inputs = torch.cat([prompt, completion[:t], torch.full((width - t,), rollout.mask_id)])[None]
        options = {"block_size": 1} if model.block_size is not None else {}
        logits = model(inputs, **options).logits[0].float()
        at = len(prompt) + t - 1 if model.shift_logits else len(prompt) + t  # Dream: i - 1 predicts i
        values.append(logits[at].log_softmax(-1)[completion[t]])
    return torch.stack(values)


@pytest.mark.parametrize(
    "family, sampler, options",
    [("llada_tiny", "llada", {"steps": 12, "block_length": 4}), ("dream_tiny", "diffusion", {"block_length": 4}),
     ("sdar_tiny", "sdar", {"denoising_steps": 1})],
)  # fmt: skip
def test_the_trace_of_a_left_to_right_rollout_is_the_exact_ar_likelihood(family, sampler, options, tokenizer):
    """Under the shipped defaults (EOS stopping on) with a policy whose rows stop at different
    steps, ragged prompts, at the temperature and blocks the preset decodes its rollouts with."""
    model = EarlyEOS(tiny(family), bias=3.0)
    algorithm = dllm.build("algorithm", "justgrpo")
    decoder = rollout_sampler(dllm.build_sampler(sampler, **options), algorithm.temperature, 1)
    eos = model.config.eos_token_id
    rollout = sampled_rollout(model, decoder, tokenizer, RAGGED, gen_length=12, eos_id=eos, seed=3)
    lengths = rollout.scored.sum(1)
    assert lengths.min() < 12 and lengths.max() > 3  # some rows stopped early, some scored several tokens
    steps = rollout.step_map.masked_fill(~rollout.scored, 10**6)
    assert (steps[:, 1:] > steps[:, :-1])[rollout.scored[:, 1:]].all()  # one token per step, left to right
    # One forward per token for full attention; one-token blocks make a block model's whole replay one forward.
    forwards = len(list(algorithm.estimator.states(rollout)))
    assert forwards == (1 if model.block_size is not None else int(lengths.max()))
    with torch.no_grad():
        traced, scored = algorithm.estimator.log_probs(model, rollout, {})
        for row in range(len(rollout)):
            by_hand = ar_log_probs(model, rollout, row)
            torch.testing.assert_close(traced[row][scored[row]], by_hand[scored[row]], atol=2e-5, rtol=1e-5)


def test_the_loss_on_a_fixed_rollout_by_hand():
    """One group of 4, rewards (1, 0, 0, 1): z-scores (population std 0.5) A = (1, -1, -1, 1).
    Token ratios r: row 0 (1.5, 1.0), row 1 (0.5), row 2 (1.1), row 3 (1.0, 0.7); clip 0.2.
    Per token -min(r A, clip(r) A): row 0 (-1.2, -1.0), row 1 0.8, row 2 1.1, row 3 (-1.0, -0.7).
    JustGRPO averages each sequence, then the sequences: (-1.1 + 0.8 + 1.1 - 0.85) / 4."""
    algorithm = dllm.build("algorithm", "justgrpo", group_size=4)
    rollout = Rollout.__new__(Rollout)
    rollout.rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    algorithm.advantage.compute(rollout, 4, None)
    assert rollout.advantages.tolist() == [1.0, -1.0, -1.0, 1.0]
    rollout.scored = torch.tensor([[True, True], [True, False], [True, False], [True, True]])
    rollout.old_log_probs = [torch.zeros(4, 2)]
    ratios = torch.tensor([[1.5, 1.0], [0.5, 1.0], [1.1, 1.0], [1.0, 0.7]])
    scored = Scored(ratios.log(), rollout.scored, rollout, 0, 4)
    per_token = algorithm.objective.per_token_loss(scored, Tally())
    loss = (per_token * token_weights(rollout.scored, algorithm.objective.normalisation) * rollout.scored).sum()
    assert loss.item() == pytest.approx(-0.0125, abs=1e-6)
    assert loss.item() != pytest.approx(-2.0 / 6, abs=1e-3)  # not the token mean


def test_one_token_blocks_take_one_step_each_and_a_sampler_without_blocks_is_refused(tokenizer):
    """Dream's own decoder has no blocks: refused. A step schedule (llada's steps, SDAR's steps per
    block) becomes one step per token for left-to-right rollouts: each one-token block takes one."""
    task = dllm.build("task", "addition")
    algorithm = dllm.build("algorithm", "justgrpo")
    with pytest.raises(ConfigError, match="block_length=1 but the sampler DreamSampler has no block_length"):
        algorithm.check_run(task, dllm.build_sampler("dream"), None)
    sdar = rollout_sampler(dllm.build_sampler("sdar", denoising_steps=2), 1.0, 1)
    assert (sdar.settings()["block_length"], sdar.settings()["denoising_steps"]) == (1, 1)
    llada = rollout_sampler(dllm.build_sampler("llada", steps=128, block_length=32), 1.0, 1)
    assert llada.settings()["steps"] is None and llada.steps_per_block(256, 1) == 1
    algorithm.check_run(task, dllm.build_sampler("sdar", denoising_steps=2), 4)
    algorithm.check_run(task, dllm.build_sampler("llada", steps=128, block_length=32), None)
