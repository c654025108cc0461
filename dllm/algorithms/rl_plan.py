"""The RL loop's bookkeeping: the sampler its rollouts decode with, the decoding checks of its
schedules, and how a rollout's rows are shuffled into optimizer steps and micro-batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from dllm.algorithms.advantages import ADVANTAGES
from dllm.algorithms.estimators.base import ESTIMATORS, Estimator
from dllm.algorithms.estimators.trace import TraceEstimator
from dllm.algorithms.objectives import OBJECTIVES
from dllm.algorithms.objectives.base import row_units
from dllm.algorithms.rollout import Rollout
from dllm.errors import ConfigError
from dllm.metric_window import aggregate
from dllm.samplers.base import Sampler

if TYPE_CHECKING:
    from dllm.algorithms.base import TrainContext


def rollout_sampler(sampler: Sampler, temperature: float | None, block_length: int | None = None) -> Sampler:
    """The run's sampler for rollouts: at `temperature`, decoding blocks of `block_length` when
    given (evaluation keeps the sampler's own settings); a changed copy is rebuilt through the
    sampler's constructor, which validates it."""
    settings = sampler.settings()
    wanted = {"temperature": temperature, "block_length": block_length}
    changes = {key: v for key, v in wanted.items() if v is not None and settings.get(key) != v}
    if block_length == 1:  # left to right (JustGRPO): a one-token block takes one step, whatever the schedule
        one_step = {"steps": None, "denoising_steps": 1}  # None: as many steps as tokens
        changes.update({key: v for key, v in one_step.items() if key in settings and settings[key] != v})
    for key, value in changes.items():
        if key not in settings:
            raise ConfigError(
                f"algorithm asks rollouts for {key}={value} but the sampler {type(sampler).__name__} has no {key}; "
                f"set the algorithm's option to null"
            )
    return sampler.replace(**changes) if changes else sampler


def check_decoding(
    sampler: Sampler,
    temperature: float | None,
    block_lengths: list[int | None],
    gen_lengths: list[int],
    model_block_size: int | None,
    training_block_size: int | None,
) -> None:
    """Refuse schedules the run cannot decode: every scheduled rollout block length with every
    scheduled generation length, checked by the sampler itself; training blocks that do not
    tile the rollout's blocks."""
    for block in block_lengths:
        rollout = rollout_sampler(sampler, temperature, block)
        for length in gen_lengths:
            try:
                rollout.check_gen_length(length, model_block_size)
            except ConfigError as refusal:
                where = f"rollout block length {block} (algorithm.rollout_block_length)" if block else "rollouts"
                raise ConfigError(f"{where} with gen_length {length}: {refusal}") from None
        size = block or model_block_size
        if training_block_size is not None and model_block_size is not None and size % training_block_size:
            raise ConfigError(
                f"algorithm.training_block_size ({training_block_size}) must divide the rollout block "
                f"length ({size}): training blocks must tile the rollout's blocks"
            )


def check_trajectory(sampler: Sampler, estimator: Estimator, advantage: Any, tree_branches: int | None) -> None:
    """Refuse a sampler that masks revealed tokens again (RCR) with the parts that rebuild the
    decoding's states from `step_map`: a remasked token was in states its final step does not show."""
    if not sampler.remasks:
        return
    readers = [
        *([f"estimator {type(estimator).__name__}"] if estimator.replays_trajectory else []),
        *([f"advantage {type(advantage).__name__}"] if advantage.replays_trajectory else []),
        *(["algorithm.tree_branches (branches share the states before their step)"] if tree_branches else []),
    ]
    if readers:
        raise ConfigError(
            f"the sampler remasks revealed tokens (rcr), so step_map cannot replay its trajectory, which "
            f"{' and '.join(readers)} read; set sampler.rcr=false or use an estimator that masks at random "
            f"(one_step, coupled, random_mask, elbo, block_mask) and a group advantage"
        )


@dataclass
class RLMicroBatch:
    """Rows of the current rollout for one micro-batch of inner iteration `iteration`."""

    rollout: Rollout
    iteration: int
    share: float


def check_training_block_size(training_block_size: int | None, estimator: Estimator) -> None:
    if training_block_size is not None and training_block_size < 1:
        raise ConfigError(f"algorithm.training_block_size must be positive (or null), got {training_block_size}")
    if training_block_size is not None and isinstance(estimator, TraceEstimator):
        raise ConfigError(
            "the trace estimator replays the rollout's own blocks: its training block size is the rollout's; "
            "leave algorithm.training_block_size null (set algorithm.rollout_block_length instead)"
        )


def shuffled_passes(ctx: TrainContext, num_iterations: int, groups: list[int]) -> list[list[list[Tensor]]]:
    """Per pass over a rollout whose rows on this process belong to `groups` (each row's group in
    the step's rollout as one process would hold it; rows of a group in order): its optimizer
    steps, each this process's rows of the step in micro-batches. Steps take rows of the global
    rollout (every process's rows, by group, then in order), shuffled alike on every process, so
    several processes train on the steps one process would."""
    keys = [(group, row) for row, group in enumerate(groups)]
    everyone = sorted(key for keys_of in ctx.collective.gather_objects(keys) for key in keys_of)
    place = {key: index for index, key in enumerate(everyone)}
    mine = {place[key]: row for row, key in enumerate(keys)}  # global index -> local row
    step_size = ctx.batch_size or ctx.micro_batch_size
    passes = []
    for _ in range(num_iterations):
        order = list(range(len(everyone)))
        ctx.rng.shuffle(order)
        passes.append(_partition(order, step_size, ctx.micro_batch_size, mine))
    return passes


def _partition(order: list[int], step_size: int, micro_size: int, mine: dict[int, int]) -> list[list[Tensor]]:
    """Global rows `order` into optimizer steps of `step_size`; of each step, this process's rows
    (`mine`: global index -> local row) in micro-batches of `micro_size`. The last step takes the
    leftover rows; a process may hold no rows of a step. The indices are made on the CPU, where
    `queued` reads them."""
    steps = []
    for start in range(0, len(order), step_size):
        rows = [mine[row] for row in order[start : start + step_size] if row in mine]
        steps.append(list(torch.tensor(rows, dtype=torch.long).split(micro_size)) if rows else [])
    return steps


def log_probs_over(
    estimator: Estimator,
    ctx: TrainContext,
    model,
    rollout: Rollout,
    iteration: int,
    queue: list[list[tuple[int, Tensor]]],
) -> Tensor:
    """[N, G] log-probs under `model` with the plan of `iteration`, computed micro-batch by
    micro-batch exactly as the queued updates of that iteration will group the rows."""
    result = torch.zeros(rollout.step_map.shape, device=ctx.device)
    with torch.no_grad(), ctx.autocast():
        for step in queue:
            for pass_index, rows in step:
                if pass_index == iteration:
                    part = rollout.select(rows)
                    result[rows] = estimator.log_probs(model, part, part.plans[iteration])[0].float()
    return result


def queued(
    queue: list[list[tuple[int, Tensor]]], rollout: Rollout | None, normalisation: str, device: torch.device
) -> tuple[list[list[tuple[int, Tensor]]], list[list[float]]]:
    """(the queue with its row indices on `device`, each queued micro-batch's share of its step
    in the objective's units (`row_units`)). The shares are summed once per rollout from the
    indices as they come (on the CPU from `shuffled_passes`), so a micro-batch's share needs no device value;
    the indices go to the device once, so selecting a micro-batch's rows copies nothing."""
    units = row_units(rollout.scored, normalisation) if rollout is not None else None
    shares = [[float(units[rows.cpu()].sum()) for _, rows in step] if units is not None else [] for step in queue]
    return [[(i, rows.to(device)) for i, rows in step] for step in queue], shares


def describe_parts(estimator: Estimator, advantage: Any, objective: Any, filters: Any) -> str:
    """`estimator trace, advantage group, objective ppo, filters accuracy_band`: the registered names."""
    named = [("estimator", ESTIMATORS, estimator), ("advantage", ADVANTAGES, advantage),
             ("objective", OBJECTIVES, objective)]  # fmt: skip
    words = [f"{kind} {registry.name_of(part) or type(part).__name__}" for kind, registry, part in named]
    return ", ".join([*words, f"filters {', '.join(filters.filters) or 'none'}"])


SUMMED_OVER_DRAWS = ("rollout_time", "rollout_nfe")  # what several draws of one step cost together


def draws_metrics(records: list[dict[str, float]], rewards: Tensor) -> dict[str, float]:
    """The metrics of a step's draws (`collect_rollout`'s, one record per draw) as one: reward mean,
    std and accuracy over all the drawn `rewards`, counts and costs summed, the rest averaged."""
    merged = aggregate(records)
    for key in SUMMED_OVER_DRAWS:
        if key in merged:
            merged[key] = sum(record.get(key, 0.0) for record in records)
    rewards = rewards.float()
    merged.update(
        reward=float(rewards.mean()),
        reward_std=float(rewards.std(unbiased=False)),
        accuracy=float((rewards >= 1.0).float().mean()),
    )
    return merged


def first_groups(counts: list[list[int]], rank: int, wanted: int | None) -> tuple[list[int], list[int]]:
    """(how many of its kept groups process `rank` trains on from each draw, and their places in
    the step's rollout), so that all processes together train on the first `wanted` kept groups
    (None: all) in the order one process draws them: draw by draw, and within a draw by rank
    (each process decodes a contiguous share of the prompts). `counts[r][d]`: the groups process
    r kept from draw d."""
    taken, places, position = [], [], 0
    for draw in range(len(counts[rank])):
        for other, kept in enumerate(counts):
            count = kept[draw] if wanted is None else max(0, min(kept[draw], wanted - position))
            if other == rank:
                taken.append(count)
                places.extend(range(position, position + count))
            position += count
    return taken, places
