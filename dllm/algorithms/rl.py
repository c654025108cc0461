"""`rl`: the one RL loop — rollout, reward, advantage, estimator, objective — in one process.

Every `num_iterations` passes over a rollout, a new one is drawn: `prompts_per_rollout`
training prompts, `group_size` completions each, decoded by the run's sampler from the live
weights (token space: the training rows are the sampler's own tokens and `step_map`). Then:

1. rewards (guarded: a failing reward call scores 0 and is counted), optional group filters;
2. advantages: `group` (z-score), `mean`, `loo`, or `value` (value model + step-level GAE);
3. for each inner iteration the estimator draws its masks (`plan`), and the old and
   reference log-probs are computed once, on exactly the micro-batches the updates will see
   (so the first update's ratio is exactly 1);
4. each pass shuffles the rows into optimizer steps of `trainer.batch_size` rows, each split
   into micro-batches of `trainer.batch_size / trainer.grad_accum` rows; a smaller last step
   takes the leftover rows. Losses are normalised over the whole optimizer step (`token` or
   `sequence`), whatever the micro-batching.

The presets in `conf/algorithm/` (`tracerl`, `tracerl_value`, `diffu_grpo`, `coupled_grpo`,
`wd1`) are this loop with their papers' settings; `dllm.build("algorithm", "diffu_grpo")`
builds them too.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from dllm.algorithms.advantages import (
    GROUP_ADVANTAGES,
    AdvantageName,
    group_advantages,
    groups_to_keep,
    wd1_weights,
)
from dllm.algorithms.base import ALGORITHMS, Algorithm, LossOutput, TrainContext
from dllm.algorithms.curriculum import Curriculum, Schedule
from dllm.algorithms.estimators.base import Estimator
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.objectives import (
    KLEstimator,
    Normalisation,
    clipped_surrogate,
    kl_penalty,
    normalising_units,
    token_weights,
)
from dllm.algorithms.rollout import Rollout, collect_rollout, save_rollout
from dllm.algorithms.value import (
    clipped_value_loss,
    decoding_steps,
    step_gae,
    step_token_rewards,
    value_model_for,
)
from dllm.checkpoint import load_model_weights
from dllm.distributed import rollout_metrics
from dllm.errors import ConfigError
from dllm.progress import forward_progress
from dllm.samplers.base import Sampler

logger = logging.getLogger(__name__)

REFERENCE_DIR, VALUE_DIR, ROLLOUT_FILE = "reference_model", "value_model", "rollout.pt"


@dataclass
class RLMicroBatch:
    """Rows of the current rollout for one micro-batch of inner iteration `iteration`."""

    rollout: Rollout
    iteration: int
    share: float


@ALGORITHMS.register("rl")
class RL(Algorithm):
    def __init__(
        self,
        estimator: Estimator | None = None,
        group_size: int = 8,
        prompts_per_rollout: int = 8,
        num_iterations: int = 1,
        temperature: float | None = 1.0,
        advantage: AdvantageName = "group",
        drop_equal_groups: bool = False,
        accuracy_band: list[float] | None = None,
        objective: Literal["ppo", "wd1"] = "ppo",
        clip_low: float = 0.2,
        clip_high: float = 0.2,
        log_ratio_clamp: float | None = None,
        beta: float = 0.0,
        kl_estimator: KLEstimator = "k3",
        kl_target: Literal["reference", "old"] = "reference",
        reference_model: Literal["frozen_copy", "none"] = "frozen_copy",
        normalisation: Normalisation = "token",
        value_lr: float = 5e-6,
        value_clip: float = 0.2,
        value_max_grad_norm: float = 1.0,
        gamma: float = 1.0,
        lam: float = 1.0,
        value_model: str | None = None,
        reward_timeout_s: float | None = None,
        max_rollout_tries: int = 4,
        rollout_block_size: int | dict[int, int] | None = None,
        training_block_size: int | None = None,
        gen_length: int | dict[int, int] | None = None,
        curriculum: Curriculum | None = None,
    ) -> None:
        self.estimator = estimator if estimator is not None else TraceEstimator()
        self.rollout_block_size = (
            Schedule(rollout_block_size, "algorithm.rollout_block_size") if rollout_block_size else None
        )
        self.gen_length = Schedule(gen_length, "algorithm.gen_length") if gen_length else None
        if training_block_size is not None and training_block_size < 1:
            raise ConfigError(f"algorithm.training_block_size must be positive (or null), got {training_block_size}")
        if training_block_size is not None and isinstance(self.estimator, TraceEstimator):
            raise ConfigError(
                "the trace estimator replays the rollout's own blocks: its training block size is the rollout's; "
                "leave algorithm.training_block_size null (set algorithm.rollout_block_size instead)"
            )
        self.training_block_size = training_block_size
        self.curriculum = curriculum
        if group_size < 1 or prompts_per_rollout < 1 or num_iterations < 1 or max_rollout_tries < 1:
            raise ConfigError(
                f"algorithm: group_size ({group_size}), prompts_per_rollout ({prompts_per_rollout}), "
                f"num_iterations ({num_iterations}) and max_rollout_tries ({max_rollout_tries}) must be >= 1"
            )
        if advantage in GROUP_ADVANTAGES and group_size < 2:
            raise ConfigError(
                f"algorithm.advantage={advantage} normalises within groups of completions of one prompt, but "
                f"group_size is {group_size}: set algorithm.group_size >= 2 (or algorithm.advantage=value)"
            )
        if objective == "wd1" and (advantage != "mean" or beta > 0):
            raise ConfigError("objective wd1 weighs whole groups and is ratio-free: use advantage=mean and beta=0")
        if beta > 0 and kl_target == "reference" and reference_model == "none":
            raise ConfigError(
                f"algorithm.beta={beta} penalises KL to a reference model, but reference_model is none: set "
                f"reference_model=frozen_copy, kl_target=old, or beta=0"
            )
        band_ok = accuracy_band is None or (len(accuracy_band) == 2 and 0 <= accuracy_band[0] <= accuracy_band[1] <= 1)
        if not band_ok:
            raise ConfigError(f"algorithm.accuracy_band must be [low, high] within [0, 1], got {accuracy_band}")
        if clip_low < 0 or clip_high < 0 or beta < 0 or value_lr <= 0 or value_clip <= 0:
            raise ConfigError("algorithm: clip_low, clip_high, beta must be >= 0 and value_lr, value_clip > 0")
        if temperature is not None and temperature < 0:
            raise ConfigError(f"algorithm.temperature must be >= 0 (or null: the sampler's own), got {temperature}")
        if not (0 <= gamma <= 1 and 0 <= lam <= 1):
            raise ConfigError(f"algorithm: gamma ({gamma}) and lam ({lam}) must be in [0, 1]")
        self.group_size = group_size
        self.prompts_per_rollout = prompts_per_rollout
        self.num_iterations = num_iterations
        self.temperature = temperature
        self.advantage = advantage
        self.drop_equal_groups = drop_equal_groups
        self.accuracy_band = tuple(accuracy_band) if accuracy_band is not None else None
        self.objective = objective
        self.clip_low, self.clip_high, self.log_ratio_clamp = clip_low, clip_high, log_ratio_clamp
        self.beta, self.kl_estimator, self.kl_target = beta, kl_estimator, kl_target
        self.reference_model = reference_model
        self.normalisation = normalisation
        self.value_lr, self.value_clip, self.value_max_grad_norm = value_lr, value_clip, value_max_grad_norm
        self.gamma, self.lam = gamma, lam
        self.value_checkpoint = value_model
        self.reward_timeout_s = reward_timeout_s
        self.max_rollout_tries = max_rollout_tries
        self.reference: torch.nn.Module | None = None
        self.value: torch.nn.Module | None = None
        self.value_optimizer: torch.optim.Optimizer | None = None
        self.rollout: Rollout | None = None
        self.queue: list[list[tuple[int, Tensor]]] = []
        self.rollout_number = 0  # rollouts drawn in this stage
        self.rollout_metrics: dict[str, float] = {}  # those of the current rollout
        self.recent: list[dict[str, Any]] = []

    @property
    def uses_reference(self) -> bool:
        return self.beta > 0 and self.kl_target == "reference"

    @property
    def uses_value(self) -> bool:
        return self.advantage == "value"

    # ---- lifecycle -------------------------------------------------------------------

    def start(self, ctx: TrainContext) -> None:
        self.device, self.tokenizer = ctx.device, ctx.tokenizer
        self.estimator.check_model(ctx.model)
        if self.prompts_per_rollout % ctx.world_size:
            raise ConfigError(
                f"algorithm.prompts_per_rollout ({self.prompts_per_rollout}) must be a multiple of the number of "
                f"processes ({ctx.world_size}): each process decodes whole groups of an equal share of the prompts"
            )
        if self.uses_value:
            self.value = value_model_for(ctx.model, self.value_checkpoint).train()
            self.value_optimizer = torch.optim.AdamW(self.value.parameters(), lr=self.value_lr, weight_decay=0.0)
            self.value_replay = TraceEstimator(shrinkage=getattr(self.estimator, "shrinkage", 1))
        if self.uses_reference:
            self.reference = copy.deepcopy(ctx.model).eval().requires_grad_(False)
        if self.curriculum is not None:
            self.curriculum.start(ctx.task)
        self.check_run(ctx.task, ctx.sampler, ctx.model.block_size)
        self.rollout, self.queue, self.rollout_number, self.rollout_metrics = None, [], 0, {}

    def check_run(self, task, sampler, model_block_size: int | None) -> None:
        """Refuse schedules the run cannot decode: every scheduled rollout block size with every
        scheduled generation length, checked by the sampler itself (before any model is built)."""
        lengths = self.gen_length.values if self.gen_length else [task.gen_length]
        blocks = self.rollout_block_size.values if self.rollout_block_size else [None]
        for block in blocks:
            rollout = rollout_sampler(sampler, self.temperature, block)
            for length in lengths:
                try:
                    rollout.check_gen_length(length, model_block_size)
                except ConfigError as refusal:
                    where = f"rollout block size {block} (algorithm.rollout_block_size)" if block else "rollouts"
                    raise ConfigError(f"{where} with gen_length {length}: {refusal}") from None
        if self.training_block_size is not None and model_block_size is not None:
            for block in blocks:
                size = block or model_block_size
                if size % self.training_block_size:
                    raise ConfigError(
                        f"algorithm.training_block_size ({self.training_block_size}) must divide the rollout block "
                        f"size ({size}): training blocks must tile the rollout's blocks"
                    )

    def state_dict(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout.to(torch.device("cpu")) if self.rollout is not None else None,
            "queue": self.queue,
            "value_optimizer": self.value_optimizer.state_dict() if self.value_optimizer is not None else None,
            "curriculum": self.curriculum.state_dict() if self.curriculum is not None else None,
            "rollout_number": self.rollout_number,
            "rollout_metrics": self.rollout_metrics,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.queue = state.get("queue", [])
        self.rollout_number, self.rollout_metrics = state.get("rollout_number", 0), state.get("rollout_metrics", {})
        if self.curriculum is not None and state.get("curriculum") is not None:
            self.curriculum.load_state_dict(state["curriculum"])
        rollout = state.get("rollout")
        self.rollout = rollout.to(self.device) if rollout is not None else None
        if self.value_optimizer is not None and state.get("value_optimizer") is not None:
            self.value_optimizer.load_state_dict(state["value_optimizer"])

    def save_models(self, directory: Path) -> None:
        if self.rollout is not None:  # the latest rollout, for `dllm-trace RUN/checkpoint/rollout.pt`
            save_rollout(self.rollout, self.tokenizer, directory / ROLLOUT_FILE)
        if self.reference is not None:
            self.reference.save_pretrained(directory / REFERENCE_DIR)
        if self.value is not None:
            self.value.save_pretrained(directory / VALUE_DIR)

    def load_models(self, directory: Path) -> None:
        if self.reference is not None:
            load_model_weights(self.reference, directory / REFERENCE_DIR)
        if self.value is not None:
            load_model_weights(self.value, directory / VALUE_DIR)

    # ---- batches ---------------------------------------------------------------------

    def micro_batches(self, ctx: TrainContext, num_micro_batches: int):
        if not self.queue:
            self.refill(ctx)
        step = self.queue.pop(0)
        units = [normalising_units(self.rollout.scored[rows], self.normalisation) for _, rows in step]
        total = ctx.collective.sum(sum(units)) or 1.0  # the global step's units (shares of all processes sum to 1)
        for (iteration, rows), unit in zip(step, units):
            yield RLMicroBatch(self.rollout.select(rows), iteration, unit / total)

    def refill(self, ctx: TrainContext) -> None:
        """Draw a rollout, score it, compute advantages, plans, old and reference log-probs,
        and queue `num_iterations` shuffled passes over it."""
        rollout, metrics = self.draw(ctx)
        # Optimizer steps take rows of the global rollout (every process's rows, in rank order),
        # shuffled alike on every process; each process keeps its own rows of each step.
        counts = ctx.collective.gather_objects(len(rollout))
        offset, total = sum(counts[: ctx.rank]), sum(counts)
        step_size = ctx.batch_size or ctx.micro_batch_size
        steps_per_pass = -(-total // step_size)
        passes = []
        for _ in range(self.num_iterations):
            order = list(range(total))
            ctx.rng.shuffle(order)
            passes.append(_partition(order, step_size, ctx.micro_batch_size, offset, len(rollout), ctx.device))
        rollout.plans = [self.estimator.plan(rollout, ctx.local_generator)]
        for _ in range(1, self.num_iterations):
            fresh = self.estimator.fresh_each_iteration
            rollout.plans.append(self.estimator.plan(rollout, ctx.local_generator) if fresh else rollout.plans[0])
        needs_old = self.objective == "ppo" and (
            self.num_iterations > 1 or steps_per_pass > 1 or (self.beta > 0 and self.kl_target == "old")
        )
        with torch.no_grad():
            if needs_old:
                rollout.old_log_probs = [
                    self._log_probs_over(ctx, ctx.model, rollout, i, passes[i]) for i in range(self.num_iterations)
                ]
            if self.uses_reference:
                rollout.ref_log_probs = [
                    self._log_probs_over(ctx, self.reference, rollout, i, passes[i]) for i in range(self.num_iterations)
                ]
        self.rollout = rollout
        self.queue = [[(i, micro) for micro in step] for i, steps in enumerate(passes) for step in steps]
        self.rollout_number += 1
        self.rollout_metrics = metrics

    def draw(self, ctx: TrainContext) -> tuple[Rollout, dict[str, float]]:
        """A scored rollout with advantages, its filtered groups dropped (retried up to
        `max_rollout_tries` times when every group is filtered out)."""
        block = self.rollout_block_size(ctx.step) if self.rollout_block_size else None
        sampler = rollout_sampler(ctx.sampler, self.temperature, block)
        gen_length = self.gen_length(ctx.step) if self.gen_length else ctx.task.gen_length
        for attempt in range(1, self.max_rollout_tries + 1):
            if self.curriculum is not None:
                picked = self.curriculum.draw(ctx.rng, self.prompts_per_rollout, ctx.step)
                prompts = [self.curriculum.pool[i] for i in picked]
            else:
                prompts = ctx.task.sample(ctx.rng, self.prompts_per_rollout)
            # Every process drew the same prompts (shared rng) and decodes its share, whole groups.
            with forward_progress(
                ctx.model, sampler.settings().get("steps") or gen_length, "rollout", ctx.show_progress
            ):
                rollout, stats = collect_rollout(
                    ctx.model, ctx.tokenizer, ctx.collective.shard(prompts), sampler, ctx.reward,
                    ctx.local_generator, self.group_size, gen_length, ctx.device, self.reward_timeout_s,
                )  # fmt: skip
            if self.curriculum is not None:
                solved = (rollout.rewards >= 1.0).float().view(-1, self.group_size).mean(1)
                self.curriculum.update(picked, ctx.collective.cat(solved).tolist())
            keep = groups_to_keep(rollout.rewards, self.group_size, self.drop_equal_groups, self.accuracy_band)
            kept_any = ctx.collective.any(bool(keep.any()))
            if kept_any or attempt == self.max_rollout_tries:
                break
            logger.info("rollout %d: every group was filtered out; drawing another", attempt)
        local = {**stats.metrics, "kept_fraction": float(keep.float().mean())}
        metrics = {**rollout_metrics(ctx.collective, local, rollout.rewards), "rollout_tries": float(attempt)}
        self.recent = [
            {"prompt": prompt, "completion": text, "reward": float(reward)}
            for prompt, text, reward in zip(stats.prompts, stats.texts, rollout.rewards.tolist())
        ][:8]
        if kept_any:
            rollout = rollout.select(keep.nonzero().squeeze(1))  # may leave this process no rows
        if self.training_block_size is not None and rollout.block_size is not None:
            rollout.block_size = self.training_block_size
        metrics.update(gen_length=float(gen_length), rollout_block_size=float(rollout.block_size or 0))
        if self.curriculum is not None:
            metrics.update(self.curriculum.metrics())
        if self.objective == "wd1":
            rollout.advantages = wd1_weights(rollout.rewards, self.group_size)
        elif self.uses_value and len(rollout) == 0:
            rollout.advantages = rollout.rewards  # no rows here this time (filtered out): nothing to value
        elif self.uses_value:
            self._value_advantages(ctx, rollout)
        else:
            rollout.advantages = group_advantages(rollout.rewards, self.group_size, self.advantage)
        return rollout, metrics

    def _value_advantages(self, ctx: TrainContext, rollout: Rollout) -> None:
        """Values of the states the rollout went through, then step-level GAE (TraceRL)."""
        values = torch.zeros(rollout.step_map.shape, device=ctx.device)
        with torch.no_grad(), ctx.autocast():
            for rows in torch.arange(len(rollout), device=ctx.device).split(ctx.micro_batch_size):
                values[rows] = self.value_replay.gather(self.value, rollout.select(rows), "values").float()
        steps = decoding_steps(self.value_replay.rounds(rollout), rollout.completion_blocks(), rollout.scored)
        # As TraceRL, the value model learns group-normalised returns: the outcome is centred
        # on its group's mean total and every reward scaled by the group's std, so a
        # completion's rewards sum to its z-score whatever step carries them.
        grouped = rollout.rewards.view(-1, self.group_size)
        mean = grouped.mean(1).repeat_interleave(self.group_size)
        std = grouped.std(1, unbiased=False).repeat_interleave(self.group_size)
        std = torch.where(std > 0, std, torch.ones_like(std))
        process = rollout.process_rewards if rollout.process_rewards is not None else torch.zeros_like(values)
        outcome = rollout.rewards - process.sum(1) - mean
        token_rewards = step_token_rewards(steps, rollout.scored, outcome / std, process / std[:, None])
        rollout.advantages, rollout.returns = step_gae(
            steps, token_rewards, values, rollout.scored, self.gamma, self.lam
        )
        rollout.old_values = values

    def _log_probs_over(self, ctx, model, rollout: Rollout, iteration: int, steps: list[list[Tensor]]) -> Tensor:
        """[N, G] log-probs under `model` with the plan of `iteration`, computed micro-batch by
        micro-batch exactly as the updates of that iteration will group the rows."""
        result = torch.zeros(rollout.step_map.shape, device=ctx.device)
        with ctx.autocast():
            for step in steps:
                for rows in step:
                    part = rollout.select(rows)
                    result[rows] = self.estimator.log_probs(model, part, part.plans[iteration])[0].float()
        return result

    # ---- loss ------------------------------------------------------------------------
    # The loss is linear in per-token values (`token_weights`), so it is summed over the
    # estimator's parts — one per replayed decoding step for the trace estimator — and
    # `loss_and_backward` back-propagates each part as soon as it is computed.

    def loss(self, model: torch.nn.Module, batch: RLMicroBatch, generator: torch.Generator) -> LossOutput:
        total, tally = torch.zeros((), device=self.device), Tally()
        for part in self._parts(model, batch, contextlib.nullcontext, tally):
            total = total + part
        return LossOutput(total, tally.metrics())

    def loss_and_backward(self, model, batch, generator, scale, autocast=contextlib.nullcontext) -> LossOutput:
        total, tally = 0.0, Tally()
        for part in self._parts(model, batch, autocast, tally):
            (part * scale).backward()
            total += part.item()
        return LossOutput(torch.tensor(total), tally.metrics())

    def _parts(self, model, batch: RLMicroBatch, autocast, tally: Tally) -> Iterator[Tensor]:
        """The micro-batch's loss in parts: the policy objective over each chunk of tokens the
        estimator scores together, then (advantage=value) the value loss over each replayed step."""
        rollout, iteration = batch.rollout, batch.iteration
        weights = token_weights(rollout.scored, self.normalisation)
        chunks = self.estimator.chunks(model, rollout, rollout.plans[iteration])

        def policy_loss(log_probs: Tensor, covered: Tensor) -> Tensor:
            return self._per_token_loss(rollout, iteration, log_probs, covered, tally)

        yield from _weighted_parts(chunks, policy_loss, weights, autocast, tally, "policy_loss")
        if self.uses_value:
            replay = self.value_replay.chunks(self.value, rollout, None, "values")

            def value_loss(values: Tensor, covered: Tensor) -> Tensor:
                return clipped_value_loss(values.float(), rollout.old_values, rollout.returns, self.value_clip)

            yield from _weighted_parts(replay, value_loss, weights, autocast, tally, "value_loss")

    def _per_token_loss(
        self, rollout: Rollout, iteration: int, log_probs: Tensor, covered: Tensor, tally: Tally
    ) -> Tensor:
        """[N, G] the objective's loss per token (valid where `covered`)."""
        tally.mean("log_prob", log_probs.detach(), covered)
        if self.objective == "wd1":
            # sum_i w_i log pi(o_i), per group: each token of sequence i weighs w_i x group_size
            # over the uniform token weights of `sequence` normalisation's sum.
            lengths = rollout.scored.sum(1, keepdim=True).clamp(min=1)
            return rollout.advantages[:, None] * log_probs * lengths * self.group_size
        old = rollout.old_log_probs[iteration] if rollout.old_log_probs else log_probs.detach()
        surrogate, ratio = clipped_surrogate(
            log_probs, old, rollout.advantages, self.clip_low, self.clip_high, self.log_ratio_clamp
        )
        clipped = (ratio < 1 - self.clip_low) | (ratio > 1 + self.clip_high)
        tally.mean("ratio", ratio.detach(), covered)
        tally.mean("clip_fraction", clipped.float(), covered)
        per_token = -surrogate
        if self.beta > 0:
            target = rollout.ref_log_probs[iteration] if self.kl_target == "reference" else old
            kl = kl_penalty(log_probs, target, self.kl_estimator)
            tally.mean("kl", kl.detach(), covered)
            per_token = per_token + self.beta * kl
        return per_token

    def after_step(self, ctx: TrainContext) -> dict[str, float]:
        if self.value_optimizer is not None:
            ctx.collective.mean_gradients(self.value.parameters())  # the replicas stay equal
            torch.nn.utils.clip_grad_norm_(self.value.parameters(), self.value_max_grad_norm)
            self.value_optimizer.step()
            self.value_optimizer.zero_grad(set_to_none=True)
        return {}

    def trained_rollout(self) -> tuple[int, dict[str, float]] | None:
        return (self.rollout_number, self.rollout_metrics) if self.rollout_number else None

    def samples(self) -> list[dict[str, Any]]:
        return self.recent


def _weighted_parts(chunks, per_token_loss, weights: Tensor, autocast, tally, name: str) -> Iterator[Tensor]:
    """Each chunk's `per_token_loss(values, covered)` summed with the step's token `weights` over
    the tokens it covers — one loss part per chunk, its forward under `autocast`."""
    while True:
        with autocast():
            chunk = next(chunks, None)
            if chunk is None:
                return
            values, covered = chunk
            part = (per_token_loss(values, covered) * weights * covered).sum()
        tally.add(name, part.item())
        yield part


class Tally:
    """Metrics of a micro-batch summed over its parts: plain sums, and token means."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, name: str, value: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value

    def mean(self, name: str, values: Tensor, covered: Tensor) -> None:
        self.add(name, float((values * covered).sum()))
        self.counts[name] = self.counts.get(name, 0.0) + float(covered.sum())

    def metrics(self) -> dict[str, float]:
        return {name: total / self.counts.get(name, 1.0) or 0.0 for name, total in self.sums.items()}


def rollout_sampler(sampler: Sampler, temperature: float | None, block_length: int | None = None) -> Sampler:
    """The run's sampler for rollouts: at `temperature`, decoding blocks of `block_length` when
    given (evaluation keeps the sampler's own settings); a changed copy is rebuilt through the
    sampler's constructor, which validates it."""
    settings = sampler.settings()
    wanted = {"temperature": temperature, "block_length": block_length}
    changes = {key: v for key, v in wanted.items() if v is not None and settings.get(key) != v}
    for key, value in changes.items():
        if key not in settings:
            raise ConfigError(
                f"algorithm asks rollouts for {key}={value} but the sampler {type(sampler).__name__} has no {key}; "
                f"set the algorithm's option to null"
            )
    return sampler.replace(**changes) if changes else sampler


def _partition(
    order: list[int], step_size: int, micro_size: int, offset: int, count: int, device: torch.device
) -> list[list[Tensor]]:
    """Global rows `order` into optimizer steps of `step_size`; of each step, this process's rows
    (`offset:offset + count`, as local indices) in micro-batches of `micro_size`. The last
    step takes the leftover rows; a process may hold no rows of a step."""
    steps = []
    for start in range(0, len(order), step_size):
        mine = [row - offset for row in order[start : start + step_size] if offset <= row < offset + count]
        steps.append(list(torch.tensor(mine, dtype=torch.long, device=device).split(micro_size)) if mine else [])
    return steps
