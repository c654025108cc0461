"""Peak memory of one batch-16, 1024-token generation, in a fresh process; prints JSON.

python benchmarks/generation_memory_probe.py sdar
"""

from __future__ import annotations

import json
import sys
import time

import torch
from training_step_probe import ResidentPeak

import dllm
from dllm.models.cache import KVCache

SIZES = {
    "llada_small": {"d_model": 512, "n_heads": 8, "n_layers": 6, "mlp_hidden_size": 1408},
    "sdar_small": {
        "hidden_size": 512, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 64,
        "num_hidden_layers": 6, "intermediate_size": 1408,
    },
}  # fmt: skip
CASES = {
    "sdar block cache": ("sdar_small", "sdar", {"remasking_strategy": "sequential"}),
    "fast_dllm dual": ("llada_small", "fast_dllm", {"block_length": 32, "threshold": None, "use_cache": "dual"}),
}


def main(label: str, batch: int = 16, gen_length: int = 1024) -> None:
    model_name, sampler_name, kwargs = CASES[label]
    torch.manual_seed(0)
    model = dllm.load_model(model_name, **SIZES[model_name]).eval()
    sampler = dllm.build_sampler(sampler_name, stop_at_eos=False, **kwargs)
    prompt = torch.randint(4, 100, (batch, 16))
    largest_cache = [0]
    extend = KVCache.extend

    def measuring_extend(self, layer, k, v, commit, replace_position):
        out = extend(self, layer, k, v, commit, replace_position)
        size = sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)
        largest_cache[0] = max(largest_cache[0], size)
        return out

    KVCache.extend = measuring_extend
    began = time.perf_counter()
    with ResidentPeak() as peak:
        sampler.generate(model, prompt, None, gen_length)
    print(
        json.dumps(
            {"seconds": time.perf_counter() - began, "peak_mb": peak.growth_mb, "cache_mb": largest_cache[0] / 2**20}
        )
    )


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]))
