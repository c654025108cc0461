"""Distribution: one code path for one process, data parallel (DDP) and DeepSpeed ZeRO-2/3,
on GPUs (NCCL) or on the CPU (gloo).

Who does what
-------------
- Accelerate (`PartialState`) starts the process group from the launcher's environment
  (`torchrun`, `accelerate launch`, or `dllm-train` relaunching itself) and picks each
  process's device.
- Every process runs the same trainer. Shared random streams (the data `rng` and the noise
  `generator`) are seeded alike on every process, so every process draws the *global* batch
  and keeps its own rows: SFT examples and masks, RL prompts (whole groups per process). What
  a process computes for its rows alone — decoding its rollouts, its estimator masks — draws
  from its own `local_generator` (on one process that is the noise generator itself).
- Micro-batch `share`s are fractions of the global optimizer step (they sum to 1 over all
  processes); the trainer back-propagates `share x world_size x loss`, because both gradient
  reductions below average over processes.

One optimizer step = the gradient of the global batch, exactly
--------------------------------------------------------------
RL back-propagates a micro-batch part by part (one backward per replayed decoding step), so
a step is many backward calls whose number no process knows in advance.

- `ddp`: torch's DistributedDataParallel all-reduces on every backward, and its `no_sync`
  pattern needs the caller to know which backward is the last. We do what it does, once:
  every backward accumulates locally, and at the step boundary `Collective.mean_gradients`
  all-reduces the accumulated gradients (flattened into a few large buckets) and divides by
  the world size. Parameters are broadcast from process 0 at the start.
- `deepspeed` (ZeRO-2/3): DeepSpeed counts one backward per micro-step and, with several
  backward calls per micro-step, reduces (and scales) each one as if it were a micro-step:
  the gradient is wrong, not just slow. The engine is built with `gradient_accumulation_steps:
  1`, and the whole optimizer step runs inside `engine.coalesce_grad_reduction()`: every
  backward leaves its gradient on the parameters, the block's exit runs one reduction
  (reduce-scatter into each process's partition), and `engine.step()` clips and updates.
  Accelerate's own DeepSpeed wrapper steps the engine on every `backward` and does not run
  DeepSpeed on the CPU, so the engine is built with `deepspeed.initialize` on Accelerate's
  process group.

Evaluation is sharded: each process decodes every `world_size`-th batch (each batch seeds its
own generator by its index, so the numbers equal a single process's), process 0 gathers the
records and alone writes metrics, samples, checkpoints' shared files and `eval.json`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dllm.errors import ConfigError, DllmError, unreadable
from dllm.metric_window import is_count
from dllm.run_files import DEEPSPEED_DIR

logger = logging.getLogger(__name__)

STRATEGIES = ("none", "ddp", "deepspeed")
DEEPSPEED_INSTALL = 'pip install "deepspeed>=0.19"  (or: pip install -e ".[deepspeed]")'
BUCKET_ELEMENTS = 2**24  # gradients all-reduced per call (64 MiB of fp32)


def launched_world_size() -> int:
    """Processes of the launcher this process runs under (1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class Collective:
    """Collectives over the run's processes. On one process every method returns its input
    and calls nothing in `torch.distributed`, so a single-process run is what it always was."""

    def __init__(self, rank: int = 0, world_size: int = 1, device: torch.device | None = None) -> None:
        self.rank, self.world_size = rank, world_size
        self.device = device or torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's `obj` (picklable), in rank order, on every process."""
        if not self.active:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, obj)
        return gathered

    def broadcast_object(self, obj: Any) -> Any:
        """Process 0's `obj` on every process."""
        if not self.active:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, value: float) -> float:
        """The sum of `value` over processes (float64 on the wire)."""
        if not self.active:
            return value
        return float(sum(self.gather_objects(float(value))))

    def any(self, flag: bool) -> bool:
        """True on every process when `flag` is true on some process."""
        return any(self.gather_objects(bool(flag))) if self.active else flag

    def shard(self, items: list[Any]) -> list[Any]:
        """This process's contiguous share of `items` (the same list on every process), whose
        length must divide by the world size."""
        if not self.active:
            return items
        if len(items) % self.world_size:
            raise ConfigError(f"{len(items)} items cannot be shared evenly by {self.world_size} processes")
        size = len(items) // self.world_size
        return items[self.rank * size : (self.rank + 1) * size]

    def cat(self, tensor: Tensor) -> Tensor:
        """Every process's `tensor` concatenated along dim 0, in rank order (sizes may differ)."""
        if not self.active:
            return tensor
        parts = self.gather_objects(tensor.detach().cpu())
        return torch.cat(parts).to(tensor.device)

    def sum_metrics(self, totals: Mapping[str, float | Tensor]) -> dict[str, float]:
        """Per key, the sum over processes (a key missing on a process counts 0), as floats
        (`host_values`: one device-to-host copy for this process's tensors)."""
        totals = host_values(totals)
        if not self.active:
            return totals
        summed: dict[str, float] = {}
        for part in self.gather_objects(totals):
            for key, value in part.items():
                summed[key] = summed.get(key, 0.0) + value
        return summed

    def mean_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Per key, the mean over the processes that logged it."""
        if not self.active:
            return metrics
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for part in self.gather_objects(metrics):
            for key, value in part.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
        return {key: sums[key] / counts[key] for key in sums}

    @torch.no_grad()
    def mean_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over processes, in a few flat all-reduces (a
        parameter without a gradient on some process counts as zeros there)."""
        if not self.active:
            return
        params = [p for p in parameters if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for bucket in _buckets(params):
            flat = torch.cat([p.grad.reshape(-1).float() for p in bucket])
            torch.distributed.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for p in bucket:
                p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
                offset += p.numel()

    @torch.no_grad()
    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Process 0's parameters and buffers on every process."""
        if not self.active:
            return
        tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
        for other in module.buffers():
            if not other.is_floating_point():  # integer buffers: as they are (a float trip could round them)
                torch.distributed.broadcast(other, src=0)
        for bucket in _buckets(tensors):
            flat = torch.cat([t.detach().reshape(-1).float() for t in bucket])
            torch.distributed.broadcast(flat, src=0)
            offset = 0
            for t in bucket:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()


def host_values(metrics: Mapping[str, float | Tensor]) -> dict[str, float]:
    """`metrics` as floats: its 0-dim tensors (detached, on any device) come to the host in one
    copy, so a step's metrics cost one synchronisation, not one per value."""
    tensors = {key: value for key, value in metrics.items() if isinstance(value, Tensor)}
    if not tensors:
        return dict(metrics)
    floats = dict(zip(tensors, torch.stack([value.detach().double() for value in tensors.values()]).tolist()))
    return {key: floats.get(key, value) for key, value in metrics.items()}


def _buckets(tensors: list[Tensor]) -> Iterator[list[Tensor]]:
    bucket: list[Tensor] = []
    size = 0
    for tensor in tensors:
        if bucket and size + tensor.numel() > BUCKET_ELEMENTS:
            yield bucket
            bucket, size = [], 0
        bucket.append(tensor)
        size += tensor.numel()
    if bucket:
        yield bucket


def require_deepspeed():
    """The `deepspeed` module, or a `DllmError` with the command that installs it."""
    try:
        import deepspeed
    except ImportError as exc:
        raise DllmError(
            f"trainer.strategy=deepspeed needs DeepSpeed, which is not installed ({exc}); install it with: "
            f"{DEEPSPEED_INSTALL} — or choose trainer=ddp"
        ) from None
    from deepspeed.runtime.engine import DeepSpeedEngine

    if not hasattr(DeepSpeedEngine, "coalesce_grad_reduction"):
        raise DllmError(
            f"DeepSpeed {deepspeed.__version__} lacks engine.coalesce_grad_reduction(), which dllm needs to "
            f"reduce the gradients of several backward calls once per optimizer step; upgrade: {DEEPSPEED_INSTALL}"
        )
    return deepspeed


@dataclass
class Runtime:
    """The processes of a run: `collective` (rank, world size), this process's `device`."""

    strategy: str
    collective: Collective
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.collective.is_main


def start_runtime(strategy: str, device: str) -> Runtime:
    """Join the launcher's process group (through Accelerate) when there is one, or when
    DeepSpeed needs one; a plain single-process run touches nothing."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"trainer.strategy={strategy!r} is not one of {', '.join(STRATEGIES)}")
    world = launched_world_size()
    if world > 1 and strategy == "none":
        raise ConfigError(
            f"launched on {world} processes but trainer.strategy is none (one process): choose a distributed "
            f"trainer (trainer=ddp, trainer=zero2 or trainer=zero3)"
        )
    if strategy == "deepspeed":
        require_deepspeed()
    if world == 1 and strategy != "deepspeed":
        if device == "auto":
            resolved = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            resolved = torch.device(device)
        return Runtime(strategy, Collective(device=resolved), resolved)
    if world == 1:  # DeepSpeed needs a process group, even of one
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_WORLD_SIZE", "1")):
            os.environ.setdefault(key, value)
    from accelerate import PartialState

    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    state = PartialState(cpu=cpu)
    chosen = state.device if device in ("auto", "cpu", "cuda") else torch.device(device)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    return Runtime(strategy, Collective(state.process_index, state.num_processes, chosen), chosen)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_sync(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    collective: Collective,
    strategy: str,
    zero_stage: int,
    max_grad_norm: float,
    deepspeed: dict[str, Any] | None,
) -> GradientSync:
    """The run's one gradient sync over `model` and its AdamW: a DeepSpeed engine for
    `strategy=deepspeed`, else the plain (one process, or DDP-style) one."""
    if strategy == "deepspeed":
        return DeepSpeedSync(model, optimizer, collective, zero_stage, max_grad_norm, deepspeed)
    return GradientSync(model, optimizer, collective)


class GradientSync:
    """How one optimizer step's gradients become the global batch's: `step_context()` wraps
    every backward of the step, `finish(max_grad_norm)` reduces, clips and updates. It also
    owns what the strategy changes about stages and checkpoints: `new_stage`, `restore`,
    `shard_writer`, `loads_model_weights`."""

    loads_model_weights = True  # resuming loads the checkpoint's saved model weights (else `restore` does)

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, collective: Collective) -> None:
        self.model, self.optimizer, self.collective = model, optimizer, collective

    def step_context(self):
        return contextlib.nullcontext()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def finish(self, max_grad_norm: float) -> float:
        """Reduce the step's gradients, clip them to `max_grad_norm`, update; the norm before
        clipping. A non-finite norm (the same on every process) updates nothing."""
        self.collective.mean_gradients(self.model.parameters())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_grad_norm))
        if math.isfinite(grad_norm):
            self.optimizer.step()
        return grad_norm

    def new_stage(self, lr: float, betas: tuple[float, float], weight_decay: float, max_grad_norm: float) -> None:
        """What a fresh AdamW is, for a new stage: state dropped, the stage's hyperparameters.
        (One optimizer for the run: a DeepSpeed engine, rebuilt, would re-partition the model.)"""
        self.optimizer.state.clear()
        for group in self.optimizer.param_groups:
            decay = weight_decay if group.get("decays", True) else 0.0  # norm gains and biases never decay
            group.update(lr=lr, initial_lr=lr, betas=betas, weight_decay=decay)

    def optimizer_state(self) -> dict[str, Any] | None:
        """The optimizer's state for the checkpoint's trainer state (None: `shard_writer` saves it)."""
        return self.optimizer.state_dict()

    def restore(self, checkpoint: Path, optimizer_state: dict[str, Any] | None) -> None:
        """Continue from `checkpoint`: the optimizer state the trainer state held."""
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)

    def shard_writer(self) -> Callable[[Path], None] | None:
        """What every process writes into a checkpoint directory besides the shared files (none here)."""
        return None

    def needs_null_backward(self) -> bool:
        """Whether a process with no micro-batch in a step must still run a (zero) backward."""
        return False


class DeepSpeedSync(GradientSync):
    """ZeRO-2/3 through a DeepSpeed engine built on the model and its AdamW."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        collective: Collective,
        zero_stage: int,
        max_grad_norm: float,
        extra: dict[str, Any] | None,
    ) -> None:
        deepspeed = require_deepspeed()
        config = {
            "train_micro_batch_size_per_gpu": 1,  # bookkeeping only: dllm makes its own micro-batches
            "gradient_accumulation_steps": 1,  # one engine micro-step = one optimizer step (see the module doc)
            "gradient_clipping": max_grad_norm,
            "zero_optimization": {"stage": zero_stage},
            "steps_per_print": 2**31 - 1,
            "wall_clock_breakdown": False,
        }
        config = _merge(config, copy.deepcopy(extra or {}))
        for key in ("fp16",):
            if config.get(key, {}).get("enabled"):
                raise ConfigError(
                    "trainer.deepspeed.fp16 is not supported (fp16 needs loss scaling, which part-by-part "
                    "back-propagation bypasses); use trainer.precision=bf16"
                )
        engine, ds_optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
        super().__init__(model, optimizer, collective)
        self.engine, self.ds_optimizer, self.zero_stage = engine, ds_optimizer, zero_stage

    def step_context(self):
        return self.engine.coalesce_grad_reduction()

    def new_stage(self, lr: float, betas: tuple[float, float], weight_decay: float, max_grad_norm: float) -> None:
        super().new_stage(lr, betas, weight_decay, max_grad_norm)
        # The stage's gradient-norm bound: DeepSpeed clips inside `step`.
        self.engine._config.gradient_clipping = max_grad_norm
        if hasattr(self.ds_optimizer, "clip_grad"):
            self.ds_optimizer.clip_grad = max_grad_norm

    def zero_grad(self) -> None:
        self.engine.zero_grad()

    def finish(self, max_grad_norm: float) -> float:
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else 0.0

    loads_model_weights = False  # its own files hold the weights (and fp32 master copies)

    def optimizer_state(self) -> dict[str, Any] | None:
        return None  # partitioned: in the checkpoint's DeepSpeed directory

    def restore(self, checkpoint: Path, optimizer_state: dict[str, Any] | None) -> None:
        """Weights, fp32 master copies and optimizer partitions, from DeepSpeed's own files."""

        try:
            self.engine.load_checkpoint(str(checkpoint), tag=DEEPSPEED_DIR, load_lr_scheduler_states=False)
        except Exception as exc:  # torch.load and DeepSpeed's own errors on a damaged partition file
            raise unreadable(checkpoint / DEEPSPEED_DIR, exc) from None

    def shard_writer(self) -> Callable[[Path], None] | None:
        return lambda directory: self.engine.save_checkpoint(str(directory), tag=DEEPSPEED_DIR)

    def needs_null_backward(self) -> bool:
        return True


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = value
    return base


def gathered_parameters(module: torch.nn.Module, zero_stage: int | None):
    """A context in which `module`'s parameters are whole (ZeRO-3 shards them; else a no-op)."""
    if zero_stage != 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None)


def full_replica(module: torch.nn.Module, zero_stage: int | None, device: torch.device) -> torch.nn.Module:
    """A plain module with `module`'s whole weights on `device`, detached from any engine
    (collective under ZeRO-3: every process calls it); elsewhere `module` itself."""
    if zero_stage != 3:
        return module
    replica = type(module)(copy.deepcopy(module.config))
    with gathered_parameters(module, zero_stage):
        replica.load_state_dict({key: value.detach().clone() for key, value in module.state_dict().items()})
    return replica.to(device).train(module.training)


def rollout_metrics(collective: Collective, metrics: dict[str, float], rewards: Tensor) -> dict[str, float]:
    """A rollout's metrics over every process: reward mean, std and accuracy from the
    gathered rewards, counts (`reward_failures`, `reward/TERM/COUNT`: `is_count`) summed, times
    the slowest process's, the rest averaged (each process holds the same number of prompts)."""
    if not collective.active:
        return metrics
    everything = collective.cat(rewards.float())
    merged = collective.mean_metrics(metrics)
    merged.update(
        reward=float(everything.mean()),
        reward_std=float(everything.std(unbiased=False)),
        accuracy=float((everything >= 1.0).float().mean()),
    )
    gathered = collective.gather_objects(metrics)
    for key in filter(is_count, metrics):
        merged[key] = sum(part.get(key, 0.0) for part in gathered)
    for key in ("rollout_time",):
        if key in metrics:
            merged[key] = max(part.get(key, 0.0) for part in gathered)
    return merged
