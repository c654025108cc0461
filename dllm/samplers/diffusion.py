"""`diffusion`: the composable decoder — block schedule x tokens-per-step schedule x unmasking
policy x cache strategy, each chosen independently. The reference presets (`llada`,
`fast_dllm`, `sdar`) are this engine with their own argument names.

- blocks: semi-autoregressive blocks of `block_length` (None: the model's block size, or the
  whole completion for full-attention models), decoded left to right; a block diffusion model's
  blocks count from each row's position 0, so a prompt ending inside a block shares it with the
  first generated tokens and the last block may run past `gen_length` (`Decoding`);
- steps: `steps` in all (None: `gen_length`), split evenly over the blocks; in a block the
  masked count is spread over its steps as evenly as possible, earlier steps taking the
  remainder (LLaDA's linear schedule), or step i reveals 2^i, the last the rest
  (`step_schedule="ascending"`, CJ-GRPO's ASS) — the quota of `top_k`, `dynamic` and `sequential`;
  `threshold`, `factor` and `entropy_bounded` decide their own count and step until the
  block is done;
- proposal: `sampling="gumbel"` (Gumbel-max in float64, LLaDA / Fast-dLLM) or `"categorical"`
  (softmax(logits / T) with `top_k` / `top_p`, SDAR); greedy at temperature 0;
- policy: `score` x `selection` (`dllm.samplers.policies.UnmaskingPolicy`); with
  `eos_min_gamma` set, an EOS proposal's confidence is scaled by a factor rising from
  `eos_min_gamma` to `eos_max_gamma` over the block's steps (CJ-GRPO's EOS Early Rejection);
- cache: `none`, `prefix`, `dual` (full attention, approximate) or `block` (block diffusion
  models, exact) — `dllm.samplers.cache_strategies`;
- `rcr`: MDPO's Running Confidence Remasking (arXiv 2508.13148): each step re-predicts every
  masked position of the block, then keeps revealed only the block's most confident tokens, as
  many as the schedule has revealed so far, each scored by the confidence it had when it was last
  revealed; the others are masked again, earlier tokens included (`running_confidence_step`).
  `step_map` then holds the step at which each final token was last revealed.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from dllm.errors import ConfigError
from dllm.samplers.base import SAMPLERS, Decoding, Sampler
from dllm.samplers.cache_strategies import BlockLogits, CacheName, CacheStrategy, NoCache, cache_strategy_class
from dllm.samplers.lanes import Lanes, RowRandomness
from dllm.samplers.policies import (
    STEP_SCHEDULES,
    Score,
    Selection,
    StepSchedule,
    UnmaskingPolicy,
    eos_rejection_factor,
    running_confidence_step,
    step_schedule,
)
from dllm.samplers.tokens import categorical_sample, filter_top_k_top_p, gumbel_max_sample, row_chunks

Sampling = Literal["gumbel", "categorical"]


@SAMPLERS.register("diffusion")
class DiffusionSampler(Sampler):
    # Presets that reproduce a reference draw their noise as it does: over the whole output of
    # the step's forward, cut to the block (so seeded runs match token for token).
    noise_over_forward: ClassVar[bool] = False
    # Gumbel sampling scores confidence with a float64 softmax (Fast-dLLM); LLaDA uses the logits' dtype.
    confidence_in_float64: ClassVar[bool] = True
    # The step quotas split the whole block (SDAR), not the masks in it: they differ in the block a
    # prompt's tail shares with the first generated tokens. A step never reveals more than is masked.
    quota_of_whole_block: ClassVar[bool] = False

    def __init__(
        self,
        block_length: int | None = None,
        steps: int | None = None,
        temperature: float = 0.0,
        top_k: int | None = 0,
        top_p: float | None = 1.0,
        sampling: Sampling = "categorical",
        score: Score = "confidence",
        selection: Selection = "top_k",
        threshold: float | None = 0.9,
        factor: float | None = 1.0,
        eb_threshold: float | None = 0.35,
        cache: CacheName = "none",
        cfg_scale: float = 0.0,
        stop_at_eos: bool = True,
        step_schedule: StepSchedule = "linear",
        eos_min_gamma: float | None = None,
        eos_max_gamma: float = 1.0,
        rcr: bool = False,
    ) -> None:
        """`top_k` / `top_p` None: no limit (as 0 / 1); `threshold`, `factor`, `eb_threshold`
        may be None where `selection` does not use them; `eos_min_gamma` None: no EOS rejection;
        `rcr`: Running Confidence Remasking (top_k selection of confidences)."""
        top_k, top_p = top_k or 0, 1.0 if top_p is None else top_p
        if temperature is None or cfg_scale is None:
            raise ConfigError(
                f"temperature ({temperature}) and cfg_scale ({cfg_scale}) must be numbers >= 0 (0: greedy, none)"
            )
        if (steps is not None and steps < 1) or (block_length is not None and block_length < 1):
            raise ConfigError(f"steps ({steps}) and block_length ({block_length}) must be positive (or null)")
        if temperature < 0 or cfg_scale < 0 or top_k < 0:
            raise ConfigError(f"temperature ({temperature}), cfg_scale ({cfg_scale}) and top_k ({top_k}) must be >= 0")
        if not 0 < top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {top_p}")
        if sampling not in ("gumbel", "categorical"):
            raise ConfigError(f"sampling must be 'gumbel' or 'categorical', got {sampling!r}")
        self.cache_class = cache_strategy_class(cache)
        if cfg_scale > 0 and cache != "none":
            raise ConfigError(f"cfg_scale > 0 (classifier-free guidance) needs cache none, got cache {cache!r}")
        self.policy = UnmaskingPolicy(score, selection, threshold, factor, eb_threshold)
        if step_schedule not in STEP_SCHEDULES:
            raise ConfigError(f"unknown step_schedule {step_schedule!r}; choose one of {', '.join(STEP_SCHEDULES)}")
        if step_schedule != "linear" and not self.policy.uses_quota:
            raise ConfigError(
                f"step_schedule {step_schedule!r} sets step quotas, which selection {selection!r} ignores; "
                f"use top_k, dynamic or sequential"
            )
        if eos_min_gamma is not None and (score != "confidence" or selection in ("sequential", "entropy_bounded")):
            raise ConfigError(
                f"eos_min_gamma scales the confidence of EOS proposals; it needs score confidence and a selection "
                f"that reads it (top_k, threshold, factor, dynamic), got {score!r} x {selection!r}"
            )
        if eos_min_gamma is not None and not 0 <= eos_min_gamma <= eos_max_gamma:
            raise ConfigError(f"need 0 <= eos_min_gamma ({eos_min_gamma}) <= eos_max_gamma ({eos_max_gamma})")
        if rcr and (score != "confidence" or selection != "top_k"):
            raise ConfigError(
                f"rcr (Running Confidence Remasking) keeps the schedule's count of most confident tokens; it needs "
                f"score confidence and selection top_k, got {score!r} x {selection!r}"
            )
        self.rcr = rcr
        self.step_schedule = step_schedule
        self.eos_min_gamma = eos_min_gamma
        self.eos_max_gamma = eos_max_gamma
        self.block_length = block_length
        self.steps = steps
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.sampling = sampling
        self.cache = cache
        self.cfg_scale = cfg_scale
        self.stop_at_eos = stop_at_eos

    def steps_per_block(self, gen_length: int, block_length: int) -> int:
        num_blocks = gen_length // block_length
        steps = self.steps or gen_length
        if steps % num_blocks:
            raise ConfigError(
                f"steps ({steps}) must be a multiple of the number of blocks (gen_length / block_length = "
                f"{num_blocks}); set steps to a multiple of {num_blocks}"
            )
        return steps // num_blocks

    def layout(self, gen_length: int, model_block_size: int | None = None) -> tuple[int, int]:
        """(block_length, steps per block) for `gen_length`; refuses lengths that do not split."""
        super().check_gen_length(gen_length)
        block_length = self.block_length or model_block_size or gen_length
        if gen_length % block_length:
            raise ConfigError(
                f"gen_length ({gen_length}) must be a multiple of block_length ({block_length}); set "
                f"block_length to a divisor of gen_length"
            )
        return block_length, self.steps_per_block(gen_length, block_length)

    def check_gen_length(self, gen_length: int, model_block_size: int | None = None) -> None:
        self.layout(gen_length, model_block_size)
        self.cache_class.check_model(model_block_size)

    def decoding_block_size(self, model: torch.nn.Module) -> int | None:
        """A block diffusion model decodes blocks of `block_length` (its own when unset), its
        attention block-causal over them in this decoding — another size than the checkpoint's
        is block-size adaptation (TraceRL)."""
        return (self.block_length or model.block_size) if model.block_size is not None else None

    def make_cache(self, model: torch.nn.Module) -> CacheStrategy:
        """A fresh cache strategy for one decoding of `model`."""
        return NoCache(self.cfg_scale) if self.cache == "none" else self.cache_class()

    per_row_progress = True

    def decode(
        self,
        model: torch.nn.Module,
        state: Decoding,
        gen_length: int,
        generator: torch.Generator | list[torch.Generator] | None,
        max_batch_rows: int | None = None,
    ) -> None:
        """Each slot decodes its row's blocks at its own pace (`dllm.samplers.lanes`): one forward
        per step serves every slot, and a slot whose row is done takes the next waiting row."""
        block_length, steps_per_block = self.layout(gen_length, model.block_size)
        cache = self.make_cache(model)
        batch, device = state.x.shape[0], state.x.device
        lanes = Lanes(batch, max_batch_rows, state.prompt_length, state.last_columns(), block_length)
        randomness = RowRandomness(generator, batch)
        quotas = torch.zeros((batch, steps_per_block), dtype=torch.long, device=device)
        # RCR: the confidence each held token of a row's block had when revealed (+inf: given)
        running = torch.zeros((batch, block_length), dtype=torch.float64, device=device) if self.rcr else None
        while True:
            admitted = lanes.admit()
            if admitted:
                cache.admit(model, state, lanes, admitted)
                self._enter_blocks(state, lanes, admitted, quotas, running)
            if not lanes:
                return
            forward = cache.block_logits(model, state, lanes)
            stepping = [slot for slot, committing in enumerate(lanes.committing) if not committing]
            moving_on = [slot for slot, committing in enumerate(lanes.committing) if committing]
            done: list[int] = []
            if stepping:
                finished, stopped = self._step(state, lanes, cache, forward, stepping, quotas, randomness, running)
                for slot, block_done, row_stopped in zip(stepping, finished, stopped, strict=True):
                    lanes.block_steps[slot] += 1
                    if row_stopped or (block_done and lanes.is_last_block(slot) and not cache.commits):
                        done.append(slot)
                    elif block_done and cache.commits:
                        lanes.committing[slot] = True  # its next forward commits the block (the last one too, as SDAR)
                    elif block_done:
                        moving_on.append(slot)
            del forward  # this step's logits go before the next forward makes its own
            done += [slot for slot in moving_on if lanes.is_last_block(slot)]
            moving_on = [slot for slot in moving_on if not lanes.is_last_block(slot)]
            for slot in moving_on:
                lanes.committing[slot] = False
                lanes.starts[slot] += block_length
                lanes.block_steps[slot] = 0
            if moving_on:
                self._enter_blocks(state, lanes, moving_on, quotas, running)
            kept = lanes.release(done)
            if kept is not None:
                cache.keep(kept)

    @property
    def remasks(self) -> bool:
        """RCR masks revealed tokens again (`Sampler.remasks`)."""
        return self.rcr

    def _enter_blocks(
        self, state: Decoding, lanes: Lanes, slots: list[int], quotas: Tensor, running: Tensor | None
    ) -> None:
        """Each step's quota for the blocks `slots` just entered, in their rows of `quotas` [B, steps]
        (RCR: tokens given in the block, a prompt's tail, are never masked: +inf in `running`)."""
        index = torch.tensor(slots, device=state.x.device)
        rows = lanes.row_tensor(state.x.device)[index]
        masked = state.tokens_at(rows, lanes.columns(state.x.device)[index]) == state.mask_id
        counts = masked.sum(1)
        if running is not None:
            running[rows] = torch.where(masked, 0.0, torch.inf).to(running.dtype)
        if self.quota_of_whole_block:
            counts = torch.full_like(counts, lanes.block_length)
        quotas[rows] = step_schedule(self.step_schedule, counts, quotas.shape[1])

    def _step(
        self,
        state: Decoding,
        lanes: Lanes,
        cache: CacheStrategy,
        forward: BlockLogits,
        stepping: list[int],
        quotas: Tensor,
        randomness: RowRandomness,
        running: Tensor | None,
    ) -> tuple[list[bool], list[bool]]:
        """Reveal tokens in the blocks of the `stepping` slots from this step's `forward`; per slot,
        (whether its block is done, whether its row has stopped at EOS)."""
        device = state.x.device
        every = len(stepping) == len(lanes)
        row_list = [lanes.rows[slot] for slot in stepping]
        block_steps = [lanes.block_steps[slot] for slot in stepping]
        shared = lanes.shared_start() if every else None
        if shared is not None:  # rows in lockstep: their blocks are one slice of the canvas
            rows, columns = lanes.row_index(device), slice(shared, shared + lanes.block_length)
            logits = forward.logits
            quota = quotas[rows, min(block_steps[0], quotas.shape[1] - 1)]
        else:
            index = None if every else torch.tensor(stepping, device=device)
            rows = lanes.row_tensor(device) if every else lanes.row_tensor(device)[index]
            columns = lanes.columns(device) if every else lanes.columns(device)[index]
            logits = forward.logits if every else forward.logits[index]
            quota = quotas[rows, torch.tensor(block_steps, device=device).clamp(max=quotas.shape[1] - 1)]
        masked = state.tokens_at(rows, columns) == state.mask_id
        lengths, offsets = [forward.forward_lengths[s] for s in stepping], [forward.offsets[s] for s in stepping]
        noise = StepNoise(randomness, row_list, lengths, offsets, lanes.block_length, self.noise_over_forward, device)
        tokens, scores = self.propose(logits, noise, block_steps, randomness.for_rows(row_list), state.mask_id)
        score_noise = noise.uniform((), torch.float32) if self.policy.score == "random" else None
        candidates = cache.candidates(masked, block_steps)
        scale = self._eos_rejection(tokens, block_steps, quotas.shape[1], state.eos_id)
        if running is None:
            revealed = self.policy.choose(scores, candidates, quota, None, score_noise, scale)
            block = state.reveal_rows(rows, columns, tokens, revealed)
        else:
            steps = torch.tensor(block_steps, device=device)[:, None]
            later = torch.arange(quotas.shape[1], device=device)[None, :] > steps
            still_masked = (quotas[rows] * later).sum(1)  # what the schedule leaves masked after this step
            confidence = scores if scale is None else scores * scale.to(scores.dtype)  # RCR scores confidence
            revealed, remasked, running[rows] = running_confidence_step(
                confidence, running[rows], masked, candidates, still_masked
            )
            state.reveal_rows(rows, columns, tokens, revealed)
            block = state.remask_rows(rows, columns, remasked)
        if state.eos_id is None:
            return (~(block == state.mask_id).any(1)).tolist(), [False] * len(stepping)
        block_done, holds_eos = torch.stack([~(block == state.mask_id).any(1), (block == state.eos_id).any(1)]).tolist()
        if running is not None:  # RCR may still mask a token before the EOS until its block is done
            holds_eos = [eos and done for eos, done in zip(holds_eos, block_done, strict=True)]
        if not any(holds_eos):  # no row can have stopped (one status read a step, no scan)
            return block_done, holds_eos
        stopped = state.stopped_in_block(rows, columns, block).tolist()
        return block_done, [stop and eos for stop, eos in zip(stopped, holds_eos, strict=True)]

    def _eos_rejection(self, tokens: Tensor, block_steps: list[int], steps: int, eos_id: int | None) -> Tensor | None:
        """[S, L] EOSER's factor on each proposal's confidence at each slot's step of its block
        (1 where the proposal is not EOS); None when off."""
        if self.eos_min_gamma is None or eos_id is None:
            return None
        factors = [
            eos_rejection_factor(self.step_schedule, s, steps, self.eos_min_gamma, self.eos_max_gamma)
            for s in block_steps
        ]
        factor = torch.tensor(factors, dtype=torch.float64, device=tokens.device)[:, None]
        return torch.where(tokens == eos_id, factor, torch.ones((), dtype=torch.float64, device=tokens.device))

    def propose(
        self,
        logits: Tensor,
        noise: StepNoise,
        block_steps: list[int],
        generators: torch.Generator | list[torch.Generator | None] | None,
        mask_id: int,
    ) -> tuple[Tensor, Tensor | None]:
        """(tokens [S, L], the policy's `position_scores` [S, L] of them, None when it reads no
        probabilities) for each slot's block `logits` [S, L, V], at `block_steps` (each slot's step
        within its block). Slots go a few at a time (`row_chunks`), each drawing its noise in slot
        order as one batched draw would: the vocabulary-wide float64 work never exists for the
        whole batch at once."""
        needs_scores = self.policy.reads_probabilities
        tokens, scores = [], []
        # categorical draws with one generator are one multinomial over the rows (`categorical_sample`)
        one_draw = self.sampling == "categorical" and self.temperature > 0 and not isinstance(generators, list)
        for rows in row_chunks(logits.shape[0], logits[0].numel(), 4, one_draw and logits.device.type != "cpu"):
            row_logits = logits[rows]
            if self.sampling == "categorical":
                row_generators = generators[rows] if isinstance(generators, list) else generators
                row_tokens, probs = categorical_sample(
                    row_logits, self.temperature, self.top_k, self.top_p, row_generators, mask_id
                )
            else:
                filtered = filter_top_k_top_p(row_logits, self.top_k, self.top_p)
                gumbel = noise.uniform((logits.shape[-1],), torch.float64, rows) if self.temperature > 0 else None
                row_tokens = gumbel_max_sample(filtered, self.temperature, None, mask_id, gumbel)
                if needs_scores:
                    scored = row_logits.to(torch.float64) if self.confidence_in_float64 else row_logits
                    probs = torch.softmax(scored, dim=-1)
            tokens.append(row_tokens)
            if needs_scores:
                scores.append(self.policy.position_scores(probs, row_tokens))
        return torch.cat(tokens), torch.cat(scores) if needs_scores else None


class StepNoise:
    """One step's uniform noise for the slots that step, row by row from each row's generator: over
    the whole output of the row's own forward, cut to its block, when reproducing a reference
    (`over_forward`), else over the block alone."""

    def __init__(
        self,
        randomness: RowRandomness,
        rows: list[int],
        forward_lengths: list[int],
        offsets: list[int],
        block_length: int,
        over_forward: bool,
        device: torch.device,
    ) -> None:
        self.randomness, self.rows, self.device = randomness, rows, device
        self.block_length, self.over_forward = block_length, over_forward
        self.forward_lengths, self.offsets = forward_lengths, offsets

    def uniform(self, trailing: tuple[int, ...], dtype: torch.dtype, which: slice = slice(None)) -> Tensor:
        """[S, block, *trailing] noise, for the slots `which` only (drawn in slot order)."""
        rows = self.rows[which]
        lengths = self.forward_lengths[which] if self.over_forward else [self.block_length] * len(rows)
        offsets = self.offsets[which] if self.over_forward else [0] * len(rows)
        shapes = [(length, *trailing) for length in lengths]
        return self.randomness.uniform(rows, shapes, offsets, self.block_length, dtype, self.device)

    def discard_whole_forward(self, which: list[int], trailing: tuple[int, ...], dtype: torch.dtype) -> None:
        """Draw (and drop) noise over the whole forward output of the slots at positions `which`."""
        if not which:
            return
        rows = [self.rows[i] for i in which]
        shapes = [(self.forward_lengths[i], *trailing) for i in which]
        self.randomness.uniform(rows, shapes, [0] * len(rows), 0, dtype, self.device)
