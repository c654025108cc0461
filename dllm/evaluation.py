"""Evaluation of a model x sampler on a task's held-out split: accuracy, length, speed."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from dllm.data.base import Task, reward_fields
from dllm.samplers.base import Sampler


@dataclass
class EvalResult:
    accuracy: float
    num_samples: int
    mean_length: float
    tokens_per_s: float
    nfe_per_token: float
    samples: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self, prefix: str = "eval/") -> dict[str, float]:
        values = asdict(self)
        values.pop("samples")
        return {prefix + key: value for key, value in values.items()}


def decode_completions(tokenizer, completion_ids: torch.Tensor) -> tuple[list[str], list[int]]:
    """Texts (cut at the first EOS, special tokens dropped) and their token lengths."""
    texts, lengths = [], []
    for row in completion_ids.tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id)]
        texts.append(tokenizer.decode(row, skip_special_tokens=True))
        lengths.append(len(row))
    return texts, lengths


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
) -> EvalResult:
    """Decode every held-out prompt with `sampler` and score it with `reward`."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    examples = task.eval_examples()
    scores: list[float] = []
    lengths: list[int] = []
    samples: list[dict[str, Any]] = []
    generated_tokens, weighted_nfe, elapsed = 0, 0.0, 0.0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        prompts = tokenizer([e.prompt for e in chunk], padding=True, return_tensors="pt").to(device)
        began = time.perf_counter()
        output = sampler.generate(
            model, prompts["input_ids"], prompts["attention_mask"], gen_length=task.gen_length, generator=generator
        )
        elapsed += time.perf_counter() - began
        texts, chunk_lengths = decode_completions(tokenizer, output.completions(prompts["input_ids"].shape[1]))
        chunk_scores = reward([e.prompt for e in chunk], texts, **reward_fields(chunk))
        scores += chunk_scores
        lengths += chunk_lengths
        generated_tokens += len(chunk) * task.gen_length
        weighted_nfe += output.nfe * len(chunk)
        for example, text, score in zip(chunk, texts, chunk_scores):
            if len(samples) < num_samples_logged:
                samples.append({"prompt": example.prompt, "completion": text, "reward": score})
    model.train(was_training)
    count = len(examples)
    return EvalResult(
        accuracy=sum(scores) / count,
        num_samples=count,
        mean_length=sum(lengths) / count,
        tokens_per_s=generated_tokens / max(elapsed, 1e-9),
        nfe_per_token=weighted_nfe / count / task.gen_length,
        samples=samples,
    )
