"""How far the `trace` replay is from the sampler's own log-probs when the sampler stops at EOS
(the shipped default): per sampler x model family, the max and mean |replayed log-prob - the
log-softmax of the sampler's forward at the step that revealed the token| over every scored
token, and the share of tokens off by more than 1e-4. Tiny models whose EOS logit is raised
(`--bias`) stand in for policies that stop early, rows at different steps; prompts are ragged.
Runnable alone, on any checkout (it uses only the sampler / rollout / estimator API):

    PYTHONPATH=. python benchmarks/trace_eos_replay.py            # bias 2 and 3
    PYTHONPATH=. python benchmarks/trace_eos_replay.py --bias 3
"""

from __future__ import annotations

import argparse

import torch

from dllm.samplers.fast_dllm import FastDLLMSampler
from dllm.samplers.llada import LLaDASampler
from dllm.samplers.sdar import SDARSampler
from dllm.tokenizer import build_char_tokenizer
from tests.unit.algorithms.rl_helpers import EarlyEOS, replay_errors, tiny

PROMPTS = ("12+345=", "7+8=", "99*9=1", "1=", "314+15=", "2*3=", "8-5=", "40+2=") * 2
GEN_LENGTH = 32
CASES = [  # (name, model preset, sampler): one forward per step over the sequence so far (no cache)
    ("llada, llada_tiny", "llada_tiny", LLaDASampler(steps=32, block_length=8, temperature=1.0)),
    ("llada, dream_tiny", "dream_tiny", LLaDASampler(steps=32, block_length=8, temperature=1.0)),
    ("fast_dllm, llada_tiny", "llada_tiny",
     FastDLLMSampler(block_length=8, threshold=0.012, temperature=1.0, use_cache="none")),
    ("sdar, sdar_tiny", "sdar_tiny",
     SDARSampler(denoising_steps=2, confidence_threshold=0.05, temperature=1.0, use_cache=False)),
    ("sdar block 8, sdar_tiny", "sdar_tiny",
     SDARSampler(block_length=8, denoising_steps=4, confidence_threshold=0.05, temperature=1.0, use_cache=False)),
    ("llada, sdar_tiny", "sdar_tiny", LLaDASampler(steps=16, block_length=4, temperature=1.0)),
]  # fmt: skip


def main(biases: list[float]) -> None:
    torch.set_num_threads(1)
    tokenizer = build_char_tokenizer()
    print("| bias | sampler, model | scored tokens | wrong (> 1e-4) | max abs diff (nats) | mean abs diff |")
    print("|---|---|---|---|---|---|")
    for bias in biases:
        for name, preset, sampler in CASES:
            errors, rollout = replay_errors(EarlyEOS(tiny(preset), bias), sampler, tokenizer, PROMPTS, GEN_LENGTH)
            scored = errors[rollout.scored]
            wrong = float((scored > 1e-4).float().mean())
            print(
                f"| {bias:g} | {name} | {scored.numel()} | {wrong:.1%} | {float(scored.max()):.2e} | "
                f"{float(scored.mean()):.2e} |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--bias", type=float, nargs="*", default=[2.0, 3.0], help="EOS logit bias (default 2 3)")
    main(parser.parse_args().bias)
