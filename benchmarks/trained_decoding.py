"""Parallel decoding on a trained model: speed and held-out accuracy at 256 tokens.

Trains llada_small on fixed-width addition (the default job), fine-tunes it to answer within
256-token completions (the answer, then EOS padding, as LLaDA trains), then decodes the
held-out prompts with plain one-token-per-step decoding and with Fast-dLLM's threshold
decoding under each cache, side by side. Writes .benchmarks/trained_decoding.json, which
benchmarks/report.py turns into a BENCHMARKS.md section.

    python benchmarks/trained_decoding.py            # trains once (~20 min on 2 cores), then measures
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

import dllm
from dllm.config import build_node, compose
from dllm.data.base import reward_fields
from dllm.text import decode_completions

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".benchmarks" / "trained_addition"
GEN = 256
THRESHOLD = {"block_length": 32, "threshold": 0.9}
CASES = {  # label: (sampler, options)
    "llada plain (1 token/step, no cache)": ("llada", {"steps": GEN, "block_length": 32}),
    "fast_dllm threshold 0.9, no cache": ("fast_dllm", {**THRESHOLD, "use_cache": "none"}),
    "fast_dllm threshold 0.9, prefix cache": ("fast_dllm", {**THRESHOLD, "use_cache": "prefix"}),
    "fast_dllm threshold 0.9, dual cache": ("fast_dllm", {**THRESHOLD, "use_cache": "dual"}),
}


def train() -> Path:
    """The fine-tuned checkpoint, trained once and kept under .benchmarks/."""
    final = CACHE / "long" / "checkpoint"
    if final.is_dir():
        return final
    env_python = [sys.executable, "-m", "dllm.cli.train"]
    subprocess.run([*env_python, f"hydra.run.dir={CACHE / 'short'}"], check=True)
    subprocess.run(
        [
            *env_python,
            "model=llada",
            f"model.pretrained={CACHE / 'short' / 'checkpoint'}",
            f"task.gen_length={GEN}",
            "trainer.max_steps=2000",
            "trainer.batch_size=16",
            "trainer.lr=1e-3",
            "trainer.warmup_steps=20",
            "task.num_eval=16",  # its own closing evaluation only; main() measures all 200 held-out prompts
            f"hydra.run.dir={CACHE / 'long'}",
        ],  # fmt: skip
        check=True,
    )
    return final


def measure(model, tokenizer, examples, sampler, batch: int) -> dict:
    """Held-out exact-match accuracy, tokens/s, NFE per token, and every completion token."""
    reward = dllm.build("reward", "exact_match")
    scores, tokens, nfe, seconds, outputs = [], 0, 0.0, 0.0, []
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        prompts = tokenizer([e.prompt for e in chunk], padding=True, return_tensors="pt")
        began = time.perf_counter()
        out = sampler.generate(model, prompts["input_ids"], prompts["attention_mask"], gen_length=GEN)
        seconds += time.perf_counter() - began
        completions = out.completions(prompts["input_ids"].shape[1])
        outputs.append(completions)
        texts, _ = decode_completions(tokenizer, completions)
        scores += reward([e.prompt for e in chunk], texts, **reward_fields(chunk))
        tokens += GEN * len(chunk)
        nfe += out.nfe * len(chunk)
    return {
        "accuracy": sum(scores) / len(scores),
        "tokens_per_s": tokens / seconds,
        "nfe_per_token": nfe / len(examples) / GEN,
        "completions": torch.cat([o.flatten() for o in outputs]).tolist(),  # for token agreement
    }


def main() -> None:
    checkpoint = train()
    torch.manual_seed(0)
    model = dllm.load_model(checkpoint).eval()
    tokenizer = dllm.load_tokenizer(checkpoint)
    task = build_node(compose([f"task.gen_length={GEN}"]).task)
    examples = task.eval_examples()
    results = []
    plain_tokens = {}
    for batch, count in ((16, len(examples)), (1, 16)):
        for label, (name, options) in CASES.items():
            sampler = dllm.build_sampler(name, **options)
            measured = measure(model, tokenizer, examples[:count], sampler, batch)
            completions = measured.pop("completions")
            if name == "llada":
                plain_tokens[batch] = completions
            agreement = sum(a == b for a, b in zip(completions, plain_tokens[batch])) / len(completions)
            results.append({"label": label, "batch": batch, "prompts": count, "agreement": agreement, **measured})
            print(json.dumps(results[-1]), flush=True)
    out = ROOT / ".benchmarks" / "trained_decoding.json"
    out.write_text(json.dumps({"gen_length": GEN, "params": sum(p.numel() for p in model.parameters()),
                               "results": results}, indent=2))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
