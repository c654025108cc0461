"""The `value` advantage: its critic trains beside the policy and travels with the checkpoints."""

import torch

import dllm
from tests.unit.algorithms.rl_helpers import tiny
from tests.unit.algorithms.test_rl import SMALL, context


def backward_one_step(tokenizer):
    """(context, a tracerl_value algorithm, its critic's weights before) after the backward passes
    of one optimizer step, before `after_step`."""
    sampler = dllm.build_sampler("llada", steps=8, block_length=8)
    ctx = context(tiny("llada_tiny").train(), tokenizer, sampler)
    algorithm = dllm.build("algorithm", "tracerl_value", **SMALL)
    algorithm.start(ctx)
    before = [p.detach().clone() for p in algorithm.advantage.critic.model.parameters()]
    for batch in algorithm.micro_batches(ctx, 2):
        algorithm.loss_and_backward(ctx.model, batch, ctx.generator, scale=batch.share)
    return ctx, algorithm, before


def test_the_critic_steps_and_its_model_and_optimizer_state_resume(tokenizer, tmp_path):
    ctx, algorithm, before = backward_one_step(tokenizer)
    critic = algorithm.advantage.critic
    algorithm.after_step(ctx)
    assert any(not torch.equal(b, p) for b, p in zip(before, critic.model.parameters())), "the critic must learn"
    algorithm.save_models(tmp_path)
    state = algorithm.state_dict()

    resumed = dllm.build("algorithm", "tracerl_value", **SMALL)
    resumed.start(ctx)
    resumed.load_state_dict(state)
    resumed.load_models(tmp_path)
    for mine, theirs in zip(resumed.advantage.critic.model.parameters(), critic.model.parameters()):
        assert torch.equal(mine, theirs)
    mine, theirs = resumed.advantage.critic.optimizer.state_dict(), critic.optimizer.state_dict()
    assert mine["state"].keys() == theirs["state"].keys() and len(theirs["state"]) > 0
    assert all(torch.equal(mine["state"][k]["exp_avg"], theirs["state"][k]["exp_avg"]) for k in theirs["state"])


def test_the_critic_drops_the_gradients_of_a_step_the_trainer_skipped(tokenizer):
    ctx, algorithm, before = backward_one_step(tokenizer)
    critic = algorithm.advantage.critic
    assert any(p.grad is not None for p in critic.model.parameters())
    ctx.step_applied = False  # the trainer skipped this step (non-finite loss or gradient)
    algorithm.after_step(ctx)
    assert all(torch.equal(b, p) for b, p in zip(before, critic.model.parameters()))
    assert all(p.grad is None for p in critic.model.parameters())
