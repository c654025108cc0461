"""`rl`: the one RL loop — draw, rollout, reward, filter, advantage, plan, update — in one process.

Every `num_iterations` passes over a rollout, it draws a new one (`prompts_per_rollout` prompts x
`group_size` completions, decoded by the run's sampler from the live weights, in token space),
scores it, keeps the groups every filter keeps, and lets the advantage set its advantages. Per
inner iteration the estimator plans its masks, and the log-probs the objective reads (old,
reference) are computed once, on the very micro-batches the updates will see (the first ratio is
exactly 1). Each pass shuffles the rows into optimizer steps of `trainer.batch_size` rows (the
last takes the leftover) in micro-batches; the objective's loss is normalised over the whole
step. The parts are components (`advantages/`, `estimators/`, `filters/`, `objectives/`); the
presets in `conf/algorithm/` are this loop with their papers' parts.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dllm.algorithms.advantages import ADVANTAGES, Advantage
from dllm.algorithms.advantages.group import GroupAdvantage
from dllm.algorithms.base import ALGORITHMS, Algorithm, LossOutput, TrainContext
from dllm.algorithms.curriculum import Curriculum, Schedule
from dllm.algorithms.estimators.base import Estimator
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.filters import Filter, Filters
from dllm.algorithms.inpainting import Inpainting
from dllm.algorithms.objectives import Objective
from dllm.algorithms.objectives.base import Scored, token_weights
from dllm.algorithms.objectives.ppo import PPO
from dllm.algorithms.overlong import OverlongShaping
from dllm.algorithms.rl_plan import (
    RLMicroBatch,
    check_decoding,
    check_training_block_size,
    check_trajectory,
    describe_parts,
    draws_metrics,
    first_groups,
    log_probs_over,
    queued,
    rollout_sampler,
    shuffled_passes,
)
from dllm.algorithms.rollout import Rollout, RolloutStats, collect_rollout, save_rollout
from dllm.algorithms.tally import Tally, weighted_parts
from dllm.algorithms.tree_rollout import check_tree
from dllm.checkpoint import load_model_weights
from dllm.distributed import rollout_metrics
from dllm.errors import ConfigError
from dllm.progress import forward_progress
from dllm.run_files import REFERENCE_DIR, ROLLOUT_FILE

logger = logging.getLogger(__name__)


@ALGORITHMS.register("rl")
class RL(Algorithm):
    def __init__(
        self,
        estimator: Estimator | None = None,
        advantage: Advantage | None = None,
        objective: Objective | None = None,
        filters: Filters | Mapping[str, Filter | None] | None = None,
        group_size: int = 8,
        prompts_per_rollout: int = 8,
        num_iterations: int = 1,
        temperature: float | None = 1.0,
        reward_timeout_s: float | None = None,
        max_rollout_tries: int = 4,
        dynamic_sampling: bool = False,
        overlong_buffer: int | float | None = None,
        overlong_penalty_factor: float = 1.0,
        overlong_filter: bool = False,
        rollout_block_length: int | dict[int, int] | None = None,
        training_block_size: int | None = None,
        gen_length: int | dict[int, int] | None = None,
        curriculum: Curriculum | None = None,
        inpainting: Inpainting | None = None,
        tree_branches: int | None = None,
    ) -> None:
        self.estimator = estimator if estimator is not None else TraceEstimator()
        self.advantage = advantage if advantage is not None else GroupAdvantage()
        self.objective = objective if objective is not None else PPO()
        self.filters = filters if isinstance(filters, Filters) else Filters(**(filters or {}))
        if group_size < 1 or prompts_per_rollout < 1 or num_iterations < 1 or max_rollout_tries < 1:
            raise ConfigError(
                f"algorithm: group_size ({group_size}), prompts_per_rollout ({prompts_per_rollout}), "
                f"num_iterations ({num_iterations}) and max_rollout_tries ({max_rollout_tries}) must be >= 1"
            )
        self.advantage.check(group_size)
        self.objective.check_advantage(self.advantage)
        self.objective.check_estimator(self.estimator)
        if temperature is not None and temperature < 0:
            raise ConfigError(f"algorithm.temperature must be >= 0 (or null: the sampler's own), got {temperature}")
        check_training_block_size(training_block_size, self.estimator)
        self.group_size, self.prompts_per_rollout = group_size, prompts_per_rollout
        self.num_iterations, self.temperature = num_iterations, temperature
        self.reward_timeout_s, self.max_rollout_tries = reward_timeout_s, max_rollout_tries
        if dynamic_sampling and not self.filters.filters:
            raise ConfigError(
                "algorithm.dynamic_sampling draws again for the groups the filters drop, but no filter is on: add "
                "+algorithm/filter@algorithm.filters.drop_equal_groups=drop_equal_groups (DAPO's)"
            )
        self.dynamic_sampling = dynamic_sampling
        shaping = overlong_buffer is not None
        self.overlong = OverlongShaping(overlong_buffer, overlong_penalty_factor) if shaping else None
        self.overlong_filter = overlong_filter
        self.rollout_block_length = (
            Schedule(rollout_block_length, "algorithm.rollout_block_length") if rollout_block_length else None
        )
        self.training_block_size = training_block_size
        self.gen_length = Schedule(gen_length, "algorithm.gen_length") if gen_length else None
        self.curriculum = curriculum
        if inpainting is not None:
            inpainting.check_estimator(self.estimator)
        self.inpainting = inpainting
        if self.advantage.needs_branches and tree_branches is None:
            raise ConfigError(
                f"algorithm/advantage={ADVANTAGES.name_of(self.advantage)} credits the steps of a tree rollout: "
                "set algorithm.tree_branches (e.g. 4, the tree_rpo preset's)"
            )
        self.tree_branches = tree_branches
        if inpainting is not None and tree_branches is not None:
            raise ConfigError(
                "algorithm.inpainting replaces rows of a group, algorithm.tree_branches shares their halves: "
                "set one of them to null"
            )
        self.reference: torch.nn.Module | None = None
        self.rollout: Rollout | None = None
        self.queue: list[list[tuple[int, Tensor]]] = []  # optimizer steps to come: (iteration, rows) per micro-batch
        self.queue_units: list[list[float]] = []  # each queued micro-batch's normalising units, read off the CPU
        self.rollout_number = 0  # rollouts drawn in this stage
        self.rollout_metrics: dict[str, float] = {}  # those of the current rollout
        # the stage's completions decoded and scored (every try, every process), and those trained on
        self.completions_seen = self.completions_trained = 0
        self.recent: list[dict[str, Any]] = []

    # ---- lifecycle -------------------------------------------------------------------

    def start(self, ctx: TrainContext) -> None:
        self.device, self.tokenizer = ctx.device, ctx.tokenizer
        self.estimator.check_model(ctx.model)
        if self.prompts_per_rollout % ctx.world_size:
            raise ConfigError(
                f"algorithm.prompts_per_rollout ({self.prompts_per_rollout}) must be a multiple of the number of "
                f"processes ({ctx.world_size}): each process decodes whole groups of an equal share of the prompts"
            )
        self.advantage.start(ctx, self.estimator)
        if self.objective.needs_reference:
            self.reference = copy.deepcopy(ctx.model).eval().requires_grad_(False)
        if self.curriculum is not None:
            self.curriculum.start(ctx.task)
        if self.inpainting is not None:
            self.inpainting.check(ctx.task)
        self.check_run(ctx.task, ctx.sampler, ctx.model.block_size)
        self.rollout, self.queue, self.queue_units, self.rollout_number, self.rollout_metrics = None, [], [], 0, {}
        self.completions_seen = self.completions_trained = 0

    def check_run(self, task, sampler, model_block_size: int | None) -> None:
        lengths = self.gen_length.values if self.gen_length else [task.gen_length]
        blocks = self.rollout_block_length.values if self.rollout_block_length else [None]
        check_decoding(sampler, self.temperature, blocks, lengths, model_block_size, self.training_block_size)
        check_trajectory(sampler, self.estimator, self.advantage, self.tree_branches)
        if self.overlong is not None:
            self.overlong.check(lengths)
        if self.tree_branches is not None:
            for block, length in itertools.product(blocks, lengths):
                sampler_now = rollout_sampler(sampler, self.temperature, block)
                check_tree(sampler_now, model_block_size, length, self.tree_branches, self.group_size)

    def state_dict(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout.to(torch.device("cpu")) if self.rollout is not None else None,
            "queue": self.queue,
            "advantage": self.advantage.state_dict(),
            "curriculum": self.curriculum.state_dict() if self.curriculum is not None else None,
            "rollout_number": self.rollout_number,
            "rollout_metrics": self.rollout_metrics,
            "completions": (self.completions_seen, self.completions_trained),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        queue = state.get("queue", [])
        self.rollout_number, self.rollout_metrics = state.get("rollout_number", 0), state.get("rollout_metrics", {})
        self.completions_seen, self.completions_trained = state.get("completions", (0, 0))
        if self.curriculum is not None and state.get("curriculum") is not None:
            self.curriculum.load_state_dict(state["curriculum"])
        rollout = state.get("rollout")
        self.rollout = rollout.to(self.device) if rollout is not None else None
        self.queue, self.queue_units = queued(queue, self.rollout, self.objective.normalisation, self.device)
        legacy = {"optimizer": state["value_optimizer"]} if state.get("value_optimizer") else {}  # before issue 16
        self.advantage.load_state_dict(state.get("advantage") or legacy)

    def save_models(self, directory: Path) -> None:
        if self.rollout is not None:  # the latest rollout, for `dllm-trace RUN/checkpoint/rollout.pt`
            save_rollout(self.rollout, self.tokenizer, directory / ROLLOUT_FILE)
        if self.reference is not None:
            self.reference.save_pretrained(directory / REFERENCE_DIR)
        self.advantage.save_models(directory)

    def load_models(self, directory: Path) -> None:
        if self.reference is not None:
            load_model_weights(self.reference, directory / REFERENCE_DIR)
        self.advantage.load_models(directory)

    # ---- batches ---------------------------------------------------------------------

    def micro_batches(self, ctx: TrainContext, num_micro_batches: int):
        if not self.queue:
            self.refill(ctx)
        step = self.queue.pop(0)
        units = self.queue_units.pop(0)
        total = ctx.collective.sum(sum(units)) or 1.0  # the global step's units (shares of all processes sum to 1)
        for (iteration, rows), unit in zip(step, units):
            yield RLMicroBatch(self.rollout.select(rows), iteration, unit / total)

    def refill(self, ctx: TrainContext) -> None:
        """Draw a rollout, score it, compute advantages, plans, old and reference log-probs,
        and queue `num_iterations` shuffled passes over it."""
        rollout, metrics = self.draw(ctx)
        queue = [
            [(i, micro) for micro in step]
            for i, steps in enumerate(shuffled_passes(ctx, self.num_iterations, rollout.group.tolist()))
            for step in steps
        ]
        self.queue, self.queue_units = queued(queue, rollout, self.objective.normalisation, ctx.device)
        rollout.plans = [self.estimator.plan(rollout, ctx.local_generator)]
        for _ in range(1, self.num_iterations):
            fresh = self.estimator.fresh_each_iteration
            rollout.plans.append(self.estimator.plan(rollout, ctx.local_generator) if fresh else rollout.plans[0])

        def over_passes(model: torch.nn.Module) -> list[Tensor]:  # the log-probs before any update
            return [
                log_probs_over(self.estimator, ctx, model, rollout, i, self.queue) for i in range(self.num_iterations)
            ]

        if self.objective.needs_old_log_probs(self.num_iterations, len(self.queue) // self.num_iterations):
            rollout.old_log_probs = over_passes(ctx.model)
        if self.reference is not None:
            rollout.ref_log_probs = over_passes(self.reference)
        self.rollout = rollout
        self.rollout_number += 1
        self.rollout_metrics = metrics

    def draw(self, ctx: TrainContext) -> tuple[Rollout, dict[str, float]]:
        """A scored rollout with advantages, the groups the filters drop left out. Without
        `dynamic_sampling` it draws again only while every group is dropped; with it (DAPO's dynamic
        sampling) it draws until `prompts_per_rollout` groups passed over all draws, and trains on the
        first that many. Either way it stops after `max_rollout_tries` draws (DAPO's
        `max_num_gen_batches`): with no group kept then, on the last draw whole."""
        block = self.rollout_block_length(ctx.step) if self.rollout_block_length else None
        sampler = rollout_sampler(ctx.sampler, self.temperature, block)
        gen_length = self.gen_length(ctx.step) if self.gen_length else ctx.task.gen_length
        wanted = self.prompts_per_rollout if self.dynamic_sampling else 1  # kept groups (all processes) to stop at
        kept: list[Rollout] = []  # each draw's kept groups
        records: list[dict[str, float]] = []
        task_rewards: list[Tensor] = []  # before the overlong shaping: what the filters and `accuracy` read
        kept_counts: list[int] = []  # this process's kept groups in each draw
        for attempt in range(1, self.max_rollout_tries + 1):
            rollout, stats = self.decode(ctx, sampler, gen_length)
            keep = self.filters.keep(rollout.rewards, self.group_size)
            task_rewards.append(rollout.rewards if stats.own_rewards is None else stats.own_rewards)
            if self.overlong is not None:
                penalty = self.overlong.penalty(rollout.scored.sum(1), gen_length)
                rollout.rewards = rollout.rewards + penalty
                stats.metrics["overlong_penalty"] = float(penalty.mean())
            records.append(stats.metrics)
            kept.append(rollout.select(keep.nonzero().squeeze(1)))
            kept_counts.append(int(keep.sum()) // self.group_size)
            counts = ctx.collective.gather_objects(kept_counts)  # each process's, per draw
            total = sum(map(sum, counts))
            if total >= wanted or attempt == self.max_rollout_tries:
                break
            logger.info(
                "rollout draw %d: %d of the %d groups wanted passed the filters; drawing again", attempt, total, wanted
            )
        if self.dynamic_sampling and total < wanted:
            logger.warning(
                "rollout: %d of the %d groups wanted passed the filters in %d draws (algorithm.max_rollout_tries); "
                "training on %s", total, wanted, attempt, "those" if total else "the last draw whole",
            )  # fmt: skip
        drawn = attempt * len(rollout) // self.group_size
        # Dynamic sampling trains on every draw's groups, so its metrics cover every draw (and its costs
        # their sum); otherwise each earlier draw was dropped whole, and the metrics are the last draw's.
        logged = slice(None) if self.dynamic_sampling else slice(-1, None)
        rewards = torch.cat(task_rewards[logged])
        local = {**draws_metrics(records[logged], rewards), "kept_fraction": float(keep.float().mean())}
        if self.dynamic_sampling:
            local["dropped_groups"] = float(drawn - sum(kept_counts))  # filtered out, over the draws
        metrics = {**rollout_metrics(ctx.collective, local, rewards), "rollout_tries": float(attempt)}
        self.recent = [
            {"prompt": prompt, "completion": text, "reward": float(reward)}
            for prompt, text, reward in zip(stats.prompts, stats.texts, task_rewards[-1].tolist())
        ][:8]
        if total:  # with dynamic sampling the first `wanted` kept groups, in the order one process draws them
            taken, places = first_groups(counts, ctx.collective.rank, wanted if self.dynamic_sampling else None)
            kept = [
                part.select(torch.arange(n * self.group_size, device=part.rewards.device))
                for part, n in zip(kept, taken)
            ]
            rollout = Rollout.concatenate([part for part in kept if len(part)] or kept[-1:], ctx.tokenizer.pad_token_id)
        else:  # the last draw whole: each process holds an equal share of its groups
            share = len(rollout) // self.group_size
            places = list(range(ctx.collective.rank * share, (ctx.collective.rank + 1) * share))
        # each row's group in the step's rollout as one process holds it: the order its optimizer steps take
        places = torch.tensor(places, dtype=torch.long, device=rollout.rewards.device)
        rollout.group = places.repeat_interleave(self.group_size)
        self.completions_trained += int(ctx.collective.sum(len(rollout)))
        if self.training_block_size is not None and rollout.block_size is not None:
            rollout.block_size = self.training_block_size
        # `rollout_block_size`: the blocks the rollout trains in (its recorded metric name)
        metrics.update(gen_length=float(gen_length), rollout_block_size=float(rollout.block_size or 0))
        if self.curriculum is not None:
            metrics.update(self.curriculum.metrics())
        self.advantage.compute(rollout, self.group_size, ctx)
        if self.overlong_filter:  # DAPO's overlong filtering: cut completions leave the loss, after the advantages
            rollout = rollout.select((~rollout.truncated).nonzero().squeeze(1))
        return rollout, metrics

    def decode(self, ctx: TrainContext, sampler, gen_length: int) -> tuple[Rollout, RolloutStats]:
        """One draw: `prompts_per_rollout` prompts (this process's share) x `group_size` completions, scored."""
        if self.curriculum is not None:
            picked = self.curriculum.draw(ctx.rng, self.prompts_per_rollout, ctx.step)
            prompts = [self.curriculum.pool[i] for i in picked]
        else:
            prompts = ctx.task.sample(ctx.rng, self.prompts_per_rollout)
        # Every process drew the same prompts (shared rng) and decodes its share, whole groups.
        steps = sampler.settings().get("steps") or gen_length
        share = ctx.collective.shard(prompts)

        def collect(examples, canvas: Tensor | None = None) -> tuple[Rollout, RolloutStats]:
            with forward_progress(ctx.model, steps, "rollout", ctx.show_progress):
                return collect_rollout(
                    ctx.model, ctx.tokenizer, examples, sampler, ctx.reward, ctx.local_generator, self.group_size,
                    gen_length, ctx.device, self.reward_timeout_s, ctx.max_batch_rows, canvas,
                    None if canvas is not None else self.tree_branches,
                )  # fmt: skip

        rollout, stats = collect(share)
        if self.inpainting is not None:  # IGPO: the groups all wrong, decoded again from part of the answer
            own, decoded = rollout.rewards, []

            def inpainted(examples, canvas: Tensor) -> Rollout:
                decoded.append(collect(examples, canvas))
                return decoded[-1][0]

            seed = int(torch.randint(2**31, (1,), generator=ctx.local_generator, device=ctx.local_generator.device))
            rollout, extra = self.inpainting.rescue(
                rollout, share, self.group_size, inpainted, ctx.model, ctx.tokenizer, random.Random(seed)
            )
            for _, more in decoded:  # its decodes cost time and forwards, and are completions seen
                stats.metrics["rollout_time"] += more.metrics["rollout_time"]
                stats.metrics["rollout_nfe"] += more.metrics["rollout_nfe"]
            # each process inpainted its own failing groups: their completions, summed over processes
            self.completions_seen += int(ctx.collective.sum(sum(len(more.texts) for _, more in decoded)))
            stats.metrics.update(extra)
            stats.own_rewards = own
        if self.curriculum is not None:
            own = rollout.rewards if stats.own_rewards is None else stats.own_rewards  # the policy's own
            solved = (own >= 1.0).float().view(-1, self.group_size).mean(1)
            self.curriculum.update(picked, ctx.collective.cat(solved).tolist())
        self.completions_seen += len(prompts) * self.group_size  # every process's: they drew the same
        return rollout, stats

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
        total, tally = torch.zeros((), device=self.device), Tally()
        for part in self._parts(model, batch, autocast, tally):
            (part * scale).backward()
            total = total + part.detach()  # summed on the device: no transfer per part
        return LossOutput(total, tally.metrics())

    def _parts(self, model, batch: RLMicroBatch, autocast, tally: Tally) -> Iterator[Tensor]:
        """The micro-batch's loss in parts: the objective over each chunk of tokens the estimator
        scores together, then the advantage's own losses (the `value` advantage's critic)."""
        rollout, iteration = batch.rollout, batch.iteration
        weights = token_weights(rollout.scored, self.objective.normalisation)
        chunks = self.estimator.chunks(model, rollout, rollout.plans[iteration])

        def policy_loss(log_probs: Tensor, covered: Tensor, extras: dict[str, Tensor] | None = None) -> Tensor:
            tally.mean("log_prob", log_probs, covered)
            scored = Scored(log_probs, covered, rollout, iteration, self.group_size, extras or {})
            return self.objective.per_token_loss(scored, tally)

        yield from weighted_parts(chunks, policy_loss, weights, autocast, tally, "policy_loss")
        yield from self.advantage.extra_losses(rollout, weights, autocast, tally)

    def after_step(self, ctx: TrainContext) -> dict[str, float]:
        return self.advantage.after_step(ctx)

    def counters(self) -> dict[str, float]:
        return {"completions_seen": self.completions_seen, "completions_trained": self.completions_trained}

    def parts(self) -> str:
        words = [describe_parts(self.estimator, self.advantage, self.objective, self.filters)]
        if self.dynamic_sampling:
            words.append(f"dynamic sampling (at most {self.max_rollout_tries} draws)")
        if self.overlong is not None:
            words.append(f"overlong buffer {self.overlong.buffer} (penalty {self.overlong.penalty_factor:g})")
        if self.overlong_filter:
            words.append("overlong filtering")
        if self.inpainting is not None:
            words.append(f"inpainting at most {self.inpainting.max_replacements} rows of all-wrong groups")
        return ", ".join(words)

    def trained_rollout(self) -> tuple[int, dict[str, float]] | None:
        return (self.rollout_number, self.rollout_metrics) if self.rollout_number else None

    def samples(self) -> list[dict[str, Any]]:
        return self.recent
