"""`dllm-generate`: decode prompts with any sampler on any model.

dllm-generate outputs/.../run --prompt "12+34="        # the run's model and sampler
dllm-generate llada_tiny --prompt-file prompts.txt sampler=llada sampler.steps=8 --gen-length 16
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from dllm.cli.common import reports_user_errors, setup_logging
from dllm.cli.runs import load_target_model, parse_target_args, resolve_target, target_parser
from dllm.config import build_node
from dllm.errors import DllmError
from dllm.evaluation import decode_completions
from dllm.signatures import check_node


def read_prompts(prompts: list[str], prompt_file: Path | None) -> list[str]:
    """Prompts from `--prompt` arguments and a file (one per line, blank lines skipped)."""
    collected = list(prompts)
    if prompt_file is not None:
        if not prompt_file.is_file():
            raise DllmError(f"prompt file {str(prompt_file)!r} does not exist")
        collected += [line for line in prompt_file.read_text().splitlines() if line.strip()]
        if not collected:
            raise DllmError(f"prompt file {str(prompt_file)!r} holds no prompts; write one prompt per line")
    if not collected:
        raise DllmError("no prompts: give --prompt TEXT (repeatable) or --prompt-file FILE")
    return collected


def format_prompts(tokenizer, prompts: list[str], use_chat_template: bool) -> list[str]:
    if not (use_chat_template and getattr(tokenizer, "chat_template", None)):
        return prompts
    return [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        for p in prompts
    ]


@reports_user_errors
def main(argv: list[str] | None = None) -> None:
    parser = target_parser("dllm-generate", __doc__)
    parser.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    parser.add_argument("--prompt-file", type=Path, default=None, help="a file with one prompt per line")
    parser.add_argument("--gen-length", type=int, default=None, help="tokens to generate (default: the task's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-chat-template", action="store_true", help="do not apply the tokenizer's chat template")
    args = parse_target_args(parser, argv)
    setup_logging()

    prompts = read_prompts(args.prompt, args.prompt_file)
    target = resolve_target(args.target, args.overrides)
    check_node("sampler", target.config.sampler)
    sampler = build_node(target.config.sampler)
    gen_length = args.gen_length or target.config.task.gen_length
    model, tokenizer = load_target_model(target)
    sampler.check_gen_length(gen_length, model.block_size)

    texts = format_prompts(tokenizer, prompts, not args.no_chat_template)
    batch = tokenizer(texts, padding=True, return_tensors="pt").to(model.device)
    generator = torch.Generator(device=model.device).manual_seed(args.seed)
    began = time.perf_counter()
    output = sampler.generate(model, batch["input_ids"], batch["attention_mask"], gen_length, generator)
    elapsed = time.perf_counter() - began
    completions, _ = decode_completions(tokenizer, output.completions(batch["input_ids"].shape[1]))
    for prompt, completion in zip(prompts, completions):
        print(f"{prompt}{completion}")
    tokens = len(prompts) * gen_length
    print(f"{tokens / elapsed:.1f} tokens/s, {output.nfe / gen_length:.3f} NFE/token", file=sys.stderr)


if __name__ == "__main__":
    main()
