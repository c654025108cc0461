"""`dllm-generate`: decode prompts with any sampler on any model.

dllm-generate outputs/.../run --prompt "12+34="        # the run's model and sampler
dllm-generate llada_tiny --prompt-file prompts.txt sampler=llada sampler.steps=8 --gen-length 16
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from dllm.cli.common import reports_user_errors, setup_logging
from dllm.cli.runs import parse_target_args, target_parser
from dllm.config import build_node
from dllm.errors import DllmError
from dllm.generation import decode_batch
from dllm.signatures import check_node
from dllm.targets import load_target_model, resolve_target


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

    generator = torch.Generator(device=model.device).manual_seed(args.seed)
    decoded = decode_batch(
        model, tokenizer, sampler, prompts, gen_length, generator, chat_template=not args.no_chat_template
    )
    for prompt, completion in zip(prompts, decoded.texts):
        print(f"{prompt}{completion}")
    tokens = len(prompts) * gen_length
    print(f"{tokens / decoded.elapsed:.1f} tokens/s, {decoded.output.nfe / gen_length:.3f} NFE/token", file=sys.stderr)


if __name__ == "__main__":
    main()
