"""Unmasking policies every decoder shares: how many tokens a step reveals, and which.

A policy = a score (how sure the model is of each proposed token) x a selection rule (which
masked positions to reveal given the scores and the step's quota). Each selection returns a
[B, L] bool mask of positions to reveal, always inside `masked`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import torch
from torch import Tensor

from dllm.errors import ConfigError

Score = Literal["confidence", "margin", "entropy", "random"]
Selection = Literal["top_k", "threshold", "factor", "dynamic", "entropy_bounded", "sequential"]
StepSchedule = Literal["linear", "ascending"]
SCORES: tuple[str, ...] = get_args(Score)
SELECTIONS: tuple[str, ...] = get_args(Selection)
STEP_SCHEDULES: tuple[str, ...] = get_args(StepSchedule)


def transfer_schedule(masked_counts: Tensor, steps: int) -> Tensor:
    """[B, steps] tokens to reveal per step: `count // steps` each, the first `count % steps`
    steps one more (LLaDA's linear schedule)."""
    base = masked_counts[:, None] // steps
    remainder = masked_counts[:, None] % steps
    step_index = torch.arange(steps, device=masked_counts.device)[None, :]
    return base + (step_index < remainder).long()


def ascending_schedule(masked_counts: Tensor, steps: int) -> Tensor:
    """[B, steps] tokens to reveal per step: step i reveals 2^i, the last step all that are left
    (CJ-GRPO's Ascending Step-Size, arXiv 2509.23924: log2(count) steps decode `count` tokens).
    A row with fewer masks stops short: it has revealed min(2^(i+1) - 1, count) after step i."""
    exponents = torch.arange(1, steps + 1, device=masked_counts.device).clamp(max=62)  # 2^62 fits int64
    revealed = torch.minimum(2**exponents - 1, masked_counts[:, None])
    revealed[:, -1] = masked_counts
    return torch.diff(revealed, dim=1, prepend=torch.zeros_like(revealed[:, :1]))


def step_schedule(kind: StepSchedule, masked_counts: Tensor, steps: int) -> Tensor:
    """[B, steps] quotas of a block: `linear` (`transfer_schedule`) or `ascending` (`ascending_schedule`)."""
    return ascending_schedule(masked_counts, steps) if kind == "ascending" else transfer_schedule(masked_counts, steps)


def eos_rejection_factor(kind: StepSchedule, step: int, steps: int, gamma_min: float, gamma_max: float) -> float:
    """EOS Early Rejection (CJ-GRPO's EOSER): the factor on an EOS proposal's confidence at `step`
    of a block's `steps`, gamma_min + (gamma_max - gamma_min) t, t the decoding progress: step / (steps - 1)
    under the `linear` schedule, the share revealed after the step, (2^(step+1) - 1) / 2^steps,
    under `ascending`. One step: gamma_max (no suppression), as the reference."""
    if steps <= 1:
        return gamma_max
    step = min(step, steps - 1)
    progress = step / (steps - 1) if kind == "linear" else (2 ** (step + 1) - 1) / 2**steps
    return gamma_min + (gamma_max - gamma_min) * progress


def select_top_k(confidence: Tensor, k: Tensor) -> Tensor:
    """[B, L] bool: the `k[b]` highest-confidence positions of each row."""
    k_max = int(k.max())
    selected = torch.zeros_like(confidence, dtype=torch.bool)
    if k_max == 0:
        return selected
    top = torch.topk(confidence, k=k_max, dim=-1).indices
    keep = torch.arange(k_max, device=k.device)[None, :] < k[:, None]
    return selected.scatter(1, top, keep)


def threshold_selection(confidence: Tensor, masked: Tensor, threshold: float) -> Tensor:
    """The most confident masked token of each row, plus every masked one >= `threshold`."""
    scores = torch.where(masked, confidence, -torch.inf)
    top = select_top_k(scores, masked.any(1).long())
    return masked & (top | (confidence >= threshold))


def factor_selection(confidence: Tensor, masked: Tensor, factor: float) -> Tensor:
    """The n most confident masked tokens, n the longest run with the k-th >= 1 - factor/(k+1) (n >= 1)."""
    scores = torch.where(masked, confidence, -torch.inf)
    ordered = scores.sort(dim=1, descending=True).values
    rank = torch.arange(1, scores.shape[1] + 1, device=scores.device)
    meets = ordered >= 1 - factor / (rank + 1)
    meets[:, 0] = True
    run = torch.cumprod(meets.long(), dim=1).sum(1)
    counts = torch.minimum(run, masked.sum(1))
    return select_top_k(scores, counts) & masked


def sequential_selection(masked: Tensor, counts: Tensor) -> Tensor:
    """The leftmost `counts[b]` masked positions of each row."""
    return masked & (torch.cumsum(masked.long(), dim=1) <= counts[:, None])


def dynamic_selection(confidence: Tensor, masked: Tensor, counts: Tensor, threshold: float) -> Tensor:
    """Every masked position above `threshold` when there are at least `counts[b]` of them,
    else the `counts[b]` most confident (SDAR's low_confidence_dynamic)."""
    above = masked & (confidence > threshold)
    counts = torch.where(above.sum(1) >= counts, above.sum(1), counts)
    return select_top_k(torch.where(masked, confidence, -torch.inf), counts) & masked


def position_entropy(probs: Tensor) -> Tensor:
    """[...] the entropy of each position's proposal distribution `probs` [..., V]."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def entropy_bounded_selection(entropy: Tensor, masked: Tensor, budget: float) -> Tensor:
    """The lowest-`entropy` ([B, L]) masked positions whose entropies sum to at most `budget`, at least one."""
    entropy = torch.where(masked, entropy, torch.inf)
    within = (entropy.sort(dim=1).values.cumsum(1) <= budget).sum(1)
    counts = torch.minimum(within.clamp(min=1), masked.sum(1))
    return select_top_k(-entropy, counts) & masked


def running_confidence_step(
    confidence: Tensor, running: Tensor, masked: Tensor, candidates: Tensor, still_masked: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One step of MDPO's Running Confidence Remasking (arXiv 2508.13148; autonomousvision/mdpo's
    `generate` with `overtime_conf`): every `candidates` position is filled with its proposal
    (`confidence` [S, L]), each held token keeps the confidence it was revealed with (`running`
    [S, L], +inf for a given token), and the `still_masked[s]` lowest of all these — masked
    positions that are not candidates first — are masked again. Returns ([S, L] bool, [S, L] bool,
    [S, L]): the positions revealed (proposals kept), the held tokens masked again, and the
    running confidences after the step."""
    scores = torch.where(candidates, confidence.to(running.dtype), torch.where(masked, -torch.inf, running))
    lowest = select_top_k(-scores, still_masked)
    revealed = candidates & ~lowest
    return revealed, lowest & ~masked, torch.where(revealed, confidence.to(running.dtype), running)


def token_scores(kind: str, probs: Tensor, tokens: Tensor) -> Tensor:
    """[B, L] score of each proposed token, higher = revealed first: its probability
    (`confidence`), the top-2 probability margin, or the negative entropy."""
    if kind == "confidence":
        return probs.gather(-1, tokens[..., None]).squeeze(-1)
    if kind == "margin":
        top2 = probs.topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    if kind == "entropy":
        return -position_entropy(probs)
    raise ValueError(f"score {kind!r} is not read from probabilities")


@dataclass(frozen=True)
class UnmaskingPolicy:
    """Which masked positions a step reveals: `score` x `selection`.

    `top_k` reveals the step's quota of best-scored positions; `threshold` the best one plus
    every other scoring >= `threshold`; `factor` Fast-dLLM's factor rule; `dynamic` everything
    above `threshold` when that meets the quota, else the quota (SDAR); `entropy_bounded` the
    lowest-entropy positions within an entropy budget `eb_threshold` (SDAR); `sequential` the
    leftmost positions (quota). A parameter its selection does not use may be None."""

    # The selections that read each parameter.
    USES: ClassVar[dict[str, tuple[str, ...]]] = {
        "threshold": ("threshold", "dynamic"),
        "factor": ("factor",),
        "eb_threshold": ("entropy_bounded",),
    }

    score: Score = "confidence"
    selection: Selection = "top_k"
    threshold: float | None = 0.9
    factor: float | None = 1.0
    eb_threshold: float | None = 0.35

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ConfigError(f"unknown score {self.score!r}; choose one of {', '.join(SCORES)}")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"unknown selection {self.selection!r}; choose one of {', '.join(SELECTIONS)}")
        values = {"threshold": self.threshold, "factor": self.factor, "eb_threshold": self.eb_threshold}
        for name, value in values.items():
            if value is None and self.selection in self.USES[name]:
                raise ConfigError(f"selection {self.selection!r} needs {name}, got null")
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")
        if (self.factor is not None and self.factor <= 0) or (self.eb_threshold is not None and self.eb_threshold <= 0):
            raise ConfigError(f"factor ({self.factor}) and eb_threshold ({self.eb_threshold}) must be > 0")

    @property
    def uses_quota(self) -> bool:
        """Whether the step schedule's quota decides how many tokens a step reveals."""
        return self.selection in ("top_k", "dynamic", "sequential")

    @property
    def reads_probabilities(self) -> bool:
        """Whether `position_scores` needs the proposal's distribution (`sequential` and `random`
        rank positions without it)."""
        return self.selection == "entropy_bounded" or (self.selection != "sequential" and self.score != "random")

    def position_scores(self, probs: Tensor, tokens: Tensor) -> Tensor:
        """[B, L] what `choose` ranks positions by, from the proposal's `probs` [B, L, V] and
        `tokens` [B, L]: the entropy for `entropy_bounded`, else the score (not `random`). Callers
        hold one slice of the distribution at a time: this reduction is all that is kept of it."""
        if self.selection == "entropy_bounded":
            return position_entropy(probs)
        return token_scores(self.score, probs, tokens)

    def choose(
        self,
        scores: Tensor | None,
        masked: Tensor,
        quota: Tensor,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        scale: Tensor | None = None,
    ) -> Tensor:
        """[B, L] bool: positions to reveal among `masked`, given `position_scores` [B, L] (None
        when not `reads_probabilities`) and the step's `quota` [B] (`random`: `noise` [B, L] when
        given, cut from a larger draw as a reference does; `scale` [B, L]: factors on the scores,
        EOSER's on EOS proposals)."""
        quota = torch.minimum(quota, masked.sum(1))
        if self.selection == "sequential":
            return sequential_selection(masked, quota)
        if self.selection == "entropy_bounded":
            return entropy_bounded_selection(scores, masked, self.eb_threshold)
        if self.score == "random":
            scores = noise if noise is not None else torch.rand(masked.shape, device=masked.device, generator=generator)
        if scale is not None:
            scores = scores * scale.to(scores.dtype)  # in the scores' dtype, as the reference scales them
        if self.selection == "threshold":
            return threshold_selection(scores, masked, self.threshold)
        if self.selection == "factor":
            return factor_selection(scores, masked, self.factor)
        if self.selection == "dynamic":
            return dynamic_selection(scores, masked, quota, self.threshold)
        return select_top_k(torch.where(masked, scores, -torch.inf), quota) & masked
