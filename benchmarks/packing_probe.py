"""Packed vs padded SFT on a length-skewed data file: tokens/s and the loss of both.

Writes a JSON Lines file of plain records whose prompts are 8 to 256 characters, most short
(8 + 248 u^4, u ~ U(0, 1)), and responses of 1 to gen_length - 1, most short; trains `llada_tiny`
(character vocabulary) on it through `task=file` for `steps` SFT optimizer steps of `batch`
examples, once padded (one example per row, prompts left-padded) and once with
`algorithm.pack=true` (rows of the micro-batch's longest example), the two runs alternating
step by step on the same examples, noise and starting weights. Tokens/s counts the tokens the
loss reads (prompt, response and its EOS fill: every non-padding token, the same in both).
Prints JSON. Every response is EOS-filled to gen_length and trained on (LLaDA's SFT), so the
padding packing removes is the prompts' left padding and the short rows' tails:

    python benchmarks/packing_probe.py [steps=40] [batch=16] [gen_length=64]
"""

from __future__ import annotations

import copy
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

import dllm
from dllm.algorithms.sft import SFT, collate_sft, pack_sft
from dllm.data.file import FileTask
from dllm.tokenizer import build_char_tokenizer


def skewed_file(path: Path, records: int, gen_length: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with path.open("w") as handle:
        for _ in range(records):
            prompt = "".join(rng.choice("0123456789+") for _ in range(7 + int(248 * rng.random() ** 4))) + "="
            response = "".join(rng.choice("0123456789") for _ in range(1 + int((gen_length - 2) * rng.random() ** 3)))
            handle.write(json.dumps({"prompt": prompt, "response": response}) + "\n")


def main(steps: int = 40, batch: int = 16, gen_length: int = 64) -> None:
    torch.set_num_threads(1)
    tokenizer = build_char_tokenizer()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "skewed.jsonl"
        skewed_file(data, 2000, gen_length)
        task = FileTask(str(data), layout="plain", gen_length=gen_length)
    torch.manual_seed(0)
    models = {"padded": dllm.load_model("llada_tiny").train()}
    models["packed"] = copy.deepcopy(models["padded"])
    optimizers = {name: torch.optim.AdamW(model.parameters(), lr=1e-3) for name, model in models.items()}
    sft, rng = SFT(), random.Random(0)
    seconds, losses, shapes = {"padded": 0.0, "packed": 0.0}, {"padded": [], "packed": []}, {"padded": [], "packed": []}
    tokens = 0
    for step in range(steps + 1):  # step 0 warms up and is not timed
        padded = collate_sft(tokenizer, task.sample(rng, batch), gen_length)
        batches = {"padded": padded, "packed": pack_sft(padded, range(batch))}
        for name, rows in batches.items():
            began = time.perf_counter()
            optimizers[name].zero_grad(set_to_none=True)
            loss = sft.loss(models[name], rows, torch.Generator().manual_seed(step)).loss
            loss.backward()
            optimizers[name].step()
            if step:
                seconds[name] += time.perf_counter() - began
                losses[name].append(loss.item())
                shapes[name].append(list(rows.input_ids.shape))
        tokens += int(padded.attention_mask.sum()) if step else 0
    worst = max(abs(a - b) / abs(a) for a, b in zip(losses["padded"], losses["packed"]))
    report = {
        name: {
            "tokens_per_s": round(tokens / seconds[name]),
            "seconds": round(seconds[name], 3),
            "columns": sum(r * c for r, c in shapes[name]),
            "padding_share": round(1 - tokens / sum(r * c for r, c in shapes[name]), 3),
            "first_loss": losses[name][0],
            "mean_loss": sum(losses[name]) / steps,
        }
        for name in seconds
    }
    report["speedup"] = round(seconds["padded"] / seconds["packed"], 2)
    report["max_rel_loss_difference"] = worst
    report["tokens"] = tokens
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:]))
