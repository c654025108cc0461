"""Evaluation of a model x sampler on a task's held-out split.

Every held-out prompt is decoded `samples_per_prompt` times and scored through
`score_batch` (with `truncated`: True where a completion has no EOS within `gen_length`).
Metrics: accuracy (the share of completions whose total reward is >= 1), mean reward,
pass@k (the unbiased estimator of Chen et al. 2021 over the n samples of each prompt),
mean response length (tokens before the EOS), tokens/s, NFE per token, the truncated share
and, for a reward of several terms, each term's mean.

Resumable: with `progress_path`, each finished batch is appended to that JSON Lines file, and
a later call with the same arguments skips the batches it holds. Each batch draws from its
own generator, seeded by `seed` and the batch's index, so an interrupted and resumed
evaluation gives the same completions and numbers as an uninterrupted one (only tokens/s,
a measured time, can differ).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from dllm.data.base import Example, Task, reward_fields
from dllm.errors import DllmError
from dllm.generation import decode_batch
from dllm.progress import advance_by_forwards
from dllm.rewards.base import RewardScores, score_batch
from dllm.samplers.base import Sampler

logger = logging.getLogger(__name__)

PROGRESS_VERSION = 1
CORRECT = 1.0  # a completion counts as correct (accuracy, pass@k) when its total reward is >= this


@dataclass
class EvalResult:
    """`num_samples`: completions scored (`num_prompts` x `samples_per_prompt`); `accuracy`:
    their share with total reward >= 1; `pass_at_k`: `{"pass@k": value}`; `reward_terms`:
    each term's mean score (rewards of several terms only); `truncated`: the share without an
    EOS; `reward_failures`: term calls that failed (scored 0) plus non-text completions."""

    accuracy: float
    num_samples: int
    mean_length: float
    tokens_per_s: float
    nfe_per_token: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    mean_reward: float = 0.0
    num_prompts: int = 0
    samples_per_prompt: int = 1
    pass_at_k: dict[str, float] = field(default_factory=dict)
    reward_terms: dict[str, float] = field(default_factory=dict)
    truncated: float = 0.0
    reward_failures: int = 0

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        """Flat numbers for `metrics.jsonl`: `eval/accuracy`, ..., `eval/pass@k`, `eval/reward/TERM`."""
        values = asdict(self)
        for key in ("samples", "pass_at_k", "reward_terms"):
            values.pop(key)
        values.update(self.pass_at_k)
        values.update({f"reward/{name}": value for name, value in self.reward_terms.items()})
        return {prefix + key: value for key, value in values.items()}


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate for one prompt with `c` correct of `n` samples:
    1 - C(n-c, k) / C(n, k), the chance that k of the n drawn without replacement hold a
    correct one (Chen et al. 2021). Exact integer binomials, so any n is safe."""
    if not 0 <= c <= n:
        raise ValueError(f"pass@k: need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs at least {k} samples per prompt, got {n}; raise the samples or lower k")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_pass_at_k(correct_counts: Sequence[int], n: int, k: int) -> float:
    """pass@k averaged over prompts, each with `correct_counts[i]` correct of `n` samples."""
    return sum(pass_at_k(n, c, k) for c in correct_counts) / len(correct_counts) if correct_counts else 0.0


def score_completions(
    reward, prompts: list[str], completions: list[Any], fields: dict[str, Any], timeout_s: float | None = None
) -> tuple[RewardScores, int]:
    """`score_batch` that tolerates completions that are not text: each scores 0 in every term
    (the reward sees `""` in its place), and their number is returned with the scores."""
    invalid = [i for i, text in enumerate(completions) if not isinstance(text, str)]
    if invalid:
        example = completions[invalid[0]]
        logger.warning(
            "%d of %d completions are not text (e.g. %r); they score 0", len(invalid), len(completions), example
        )
        completions = [text if isinstance(text, str) else "" for text in completions]
    scores = score_batch(reward, prompts, completions, fields, timeout_s)
    for i in invalid:
        scores.total[i] = 0.0
        for values in scores.terms.values():
            values[i] = 0.0
    return scores, len(invalid)


def batch_seed(seed: int, index: int) -> int:
    """The generator seed of batch `index`: a fixed function of (`seed`, `index`)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    tokenizer,
    sampler: Sampler,
    task: Task,
    reward,
    batch_size: int = 100,
    seed: int = 0,
    num_samples_logged: int = 8,
    *,
    samples_per_prompt: int = 1,
    pass_at: Sequence[int] | None = None,
    progress_path: str | Path | None = None,
    fingerprint: str = "",
    reward_timeout_s: float | None = None,
    show_progress: bool = False,
    collective=None,
    max_batch_rows: int | None = None,
) -> EvalResult:
    """Decode every held-out prompt `samples_per_prompt` times with `sampler`, `batch_size`
    sequences per sampler call, and score the completions with `reward`.

    `pass_at`: the k of pass@k (default: 1 and `samples_per_prompt`); each must be at most
    `samples_per_prompt`. `progress_path`: a JSON Lines file of finished batches, resumed when
    it exists (see the module docstring); `fingerprint` names what the arguments cannot show
    (e.g. the checkpoint's files), and a progress file written under another one, or for other
    prompts, sampler settings, seed, batch size or samples per prompt, is refused. `collective`
    (`dllm.distributed.Collective`, several processes): each process decodes every world-size-th
    batch and all get every record, so the numbers are a single process's (each batch seeds its
    own generator by its index). `max_batch_rows`: at most that many of a batch's sequences decode
    at once (`decode_batch`).
    """
    if batch_size < 1 or samples_per_prompt < 1:
        raise DllmError(f"batch_size ({batch_size}) and samples_per_prompt ({samples_per_prompt}) must be positive")
    ks = sorted(set(pass_at if pass_at is not None else (1, samples_per_prompt)))
    for k in ks:
        if not 1 <= k <= samples_per_prompt:
            raise DllmError(
                f"pass@{k} needs at least {k} samples per prompt, but there are {samples_per_prompt}; "
                f"raise the samples per prompt (--num-samples {k}) or drop k={k}"
            )
    rank, world = (collective.rank, collective.world_size) if collective is not None else (0, 1)
    if world > 1 and progress_path is not None:
        raise DllmError("a sharded evaluation keeps no progress file; evaluate on one process to resume one")
    examples = task.eval_examples()
    if not examples:
        raise DllmError("the task has no held-out examples to evaluate")
    items = [(p, s) for p in range(len(examples)) for s in range(samples_per_prompt)]
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    header = {
        "dllm_eval_progress": PROGRESS_VERSION,
        "fingerprint": _fingerprint(
            examples,
            sampler,
            reward,
            task.gen_length,
            seed,
            batch_size,
            samples_per_prompt,
            # rows that progress on their own draw from their own generators: the limit changes nothing
            fingerprint if sampler.per_row_progress else [fingerprint, max_batch_rows],
        ),  # fmt: skip
        "num_prompts": len(examples),
        "samples_per_prompt": samples_per_prompt,
        "batch_size": batch_size,
    }
    progress = _Progress(Path(progress_path), header) if progress_path is not None else None
    done = progress.load(len(batches)) if progress is not None else {}
    if len(done) == len(batches):
        logger.info(
            "%s holds this whole evaluation (%d batches); reporting it (delete it to redo)", progress_path, len(done)
        )
    elif done:
        logger.info("resuming the evaluation in %s: %d of %d batches done", progress_path, len(done), len(batches))

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        quiet = {} if show_progress else {"disable": True}  # shown: TQDM_DISABLE=1 still hides it
        # Counted in completions, advanced within a batch by the sampler's forward passes, so a
        # long evaluation shows its pace and ETA from the first batch on.
        mine = [i for i in range(len(batches)) if i % world == rank]
        finished = sum(len(batches[i]) for i in mine if i in done)
        total = sum(len(batches[i]) for i in mine)
        bar = tqdm(total=total, initial=finished, desc="eval", unit="completion", leave=False, **quiet)
        forwards = sampler.settings().get("steps") or task.gen_length  # a guess; the bar ends each batch exact
        for index, batch in enumerate(batches):
            if index in done or index % world != rank:
                continue
            with advance_by_forwards(bar, model, len(batch), forwards):
                record = _run_batch(
                    model, tokenizer, sampler, task, reward, examples, batch, index, seed, device, reward_timeout_s,
                    max_batch_rows,
                )  # fmt: skip
            done[index] = record
            if progress is not None:
                progress.append(record)
        bar.close()
    finally:
        model.train(was_training)
    if world > 1:
        for part in collective.gather_objects(done):
            done.update(part)
    return _summarise(
        [done[i] for i in range(len(batches))], examples, samples_per_prompt, ks, task.gen_length, num_samples_logged
    )


def _run_batch(
    model, tokenizer, sampler, task, reward, examples, batch, index, seed, device, timeout_s, max_batch_rows
) -> dict:
    """Decode and score one batch; the JSON-able record the progress file keeps."""
    chunk = [examples[p] for p, _ in batch]
    generator = torch.Generator(device=device).manual_seed(batch_seed(seed, index))
    decoded = decode_batch(
        model, tokenizer, sampler, [e.prompt for e in chunk], task.gen_length, generator, max_batch_rows=max_batch_rows
    )
    texts, lengths, truncated = decoded.texts, decoded.lengths, decoded.truncated.tolist()
    fields = {**reward_fields(chunk), "truncated": truncated}
    scores, invalid = score_completions(reward, [e.prompt for e in chunk], texts, fields, timeout_s)
    rows = [
        {
            "prompt": p,
            "sample": s,
            "completion": texts[i] if isinstance(texts[i], str) else None,
            "length": lengths[i],
            "reward": scores.total[i],
            "terms": {name: values[i] for name, values in scores.terms.items()},
            "truncated": bool(truncated[i]),
        }
        for i, (p, s) in enumerate(batch)
    ]
    return {
        "batch": index,
        "elapsed": decoded.elapsed,
        "nfe": int(decoded.output.nfe),
        "failures": scores.failures + invalid,
        "rows": rows,
    }


def _summarise(records, examples, n, ks, gen_length, num_logged) -> EvalResult:
    rows = [row for record in records for row in record["rows"]]
    count = len(rows)
    correct = [0] * len(examples)
    for row in rows:
        correct[row["prompt"]] += row["reward"] >= CORRECT
    terms = list(rows[0]["terms"]) if rows else []
    elapsed = sum(record["elapsed"] for record in records)
    samples = []
    for row in rows[:num_logged]:
        sample = {"prompt": examples[row["prompt"]].prompt, "completion": row["completion"], "reward": row["reward"]}
        if len(terms) > 1:
            sample["terms"] = row["terms"]
        samples.append(sample)
    return EvalResult(
        accuracy=sum(row["reward"] >= CORRECT for row in rows) / count,
        num_samples=count,
        mean_length=sum(row["length"] for row in rows) / count,
        tokens_per_s=count * gen_length / max(elapsed, 1e-9),
        nfe_per_token=sum(record["nfe"] * len(record["rows"]) for record in records) / count / gen_length,
        samples=samples,
        mean_reward=sum(row["reward"] for row in rows) / count,
        num_prompts=len(examples),
        samples_per_prompt=n,
        pass_at_k={f"pass@{k}": mean_pass_at_k(correct, n, k) for k in ks},
        reward_terms={name: sum(row["terms"][name] for row in rows) / count for name in terms}
        if len(terms) > 1
        else {},
        truncated=sum(row["truncated"] for row in rows) / count,
        reward_failures=sum(record["failures"] for record in records),
    )


def _fingerprint(examples: list[Example], sampler, reward, gen_length, seed, batch_size, n, extra) -> str:
    """A hash of what decides an evaluation's completions and scores."""

    def settings(obj: Any) -> dict[str, Any]:
        """A reward's type and the constructor arguments it keeps under their own names (its
        settings; counters and caches it grows later are not). Rewards may be any callable, so
        this reads them back; samplers record theirs (`Sampler.settings`)."""
        plain = (bool, int, float, str, type(None))
        try:
            names = inspect.signature(type(obj)).parameters
        except (TypeError, ValueError):
            names = {}
        values = {name: getattr(obj, name) for name in names if isinstance(getattr(obj, name, ...), plain)}
        return {"type": type(obj).__qualname__, **values}

    content = {
        "examples": [[e.prompt, e.fields] for e in examples],
        "sampler": {"type": type(sampler).__qualname__, "settings": sampler.settings()},
        "reward": settings(reward),
        "gen_length": gen_length,
        "seed": seed,
        "batch_size": batch_size,
        "samples_per_prompt": n,
        "extra": extra,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=repr).encode()).hexdigest()[:16]


class _Progress:
    """The JSON Lines progress file: a header line, then one line per finished batch."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path, self.header = path, header

    def load(self, num_batches: int) -> dict[int, dict]:
        """The finished batches, by index; creates the file (with its header) when absent. A
        last line cut short by a kill is dropped from the file."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.header) + "\n")
            return {}
        lines = self.path.read_text().splitlines(keepends=True)
        try:
            header = json.loads(lines[0])
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("dllm_eval_progress") != PROGRESS_VERSION:
            raise DllmError(f"{self.path} is not a dllm evaluation progress file; delete it or write elsewhere")
        if header != self.header:
            raise DllmError(
                f"{self.path} holds the progress of another evaluation (other prompts, sampler, seed, batch size, "
                f"samples per prompt or checkpoint); delete it to start over (dllm-eval --restart) or choose another "
                f"output directory"
            )
        done: dict[int, dict] = {}
        kept = [lines[0]]
        for number, line in enumerate(lines[1:], start=2):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):  # the batch being written when the process died
                    logger.info("%s:%d: dropping an unfinished last line", self.path, number)
                    continue
                raise DllmError(f"{self.path}:{number}: corrupt progress line; delete the file to start over") from None
            if not line.endswith("\n"):
                line += "\n"
            index = record.get("batch")
            if isinstance(index, int) and 0 <= index < num_batches:
                done[index] = record
            kept.append(line)
        if len(kept) != len(lines) or not lines[-1].endswith("\n"):
            self.path.write_text("".join(kept))
        return done

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()


def markdown_table(result: EvalResult, setup: dict[str, str] | None = None) -> str:
    """`result` as a markdown table (metric | value), after a list of `setup` lines
    (model, sampler, task, ...) when given."""
    lines = [f"- {key}: {value}" for key, value in (setup or {}).items()]
    if lines:
        lines.append("")
    rows = [
        ("prompts", str(result.num_prompts)),
        ("samples per prompt", str(result.samples_per_prompt)),
        ("accuracy", f"{result.accuracy:.4f}"),
        ("mean reward", f"{result.mean_reward:.4f}"),
        *((name, f"{value:.4f}") for name, value in result.pass_at_k.items()),
        *((f"reward/{name}", f"{value:.4f}") for name, value in result.reward_terms.items()),
        ("mean length (tokens)", f"{result.mean_length:.2f}"),
        ("truncated", f"{result.truncated:.4f}"),
        ("tokens/s", f"{result.tokens_per_s:.1f}"),
        ("NFE per token", f"{result.nfe_per_token:.3f}"),
        ("reward failures", str(result.reward_failures)),
    ]
    lines += ["| metric | value |", "|---|---:|", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines) + "\n"
