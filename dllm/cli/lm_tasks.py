"""`dllm-eval TARGET --tasks gsm8k,arc_easy`: lm-eval tasks on a dllm target, through the
`--model dllm` adapter, with the target's sampler (or the one the overrides choose).

Results go to RUN/eval/lm_eval-TASKS-SAMPLER-HASH/ (outputs/eval/... for a checkpoint or
preset): lm-eval's results.json, whose `config.dllm` records the model, the sampler and all
its settings, tokens/s, NFE per token and the versions, and results.md, its table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

from dllm.errors import DllmError
from dllm.run_files import EVAL_DIR

logger = logging.getLogger("dllm.eval")


def add_task_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("lm-eval tasks (pip install 'dllm[eval]')")
    group.add_argument("--tasks", default=None, help="comma-separated lm-eval tasks, e.g. gsm8k,arc_easy")
    group.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples (default: the task's)")
    group.add_argument("--limit", type=float, default=None, help="examples per task (a fraction if < 1)")
    group.add_argument("--apply-chat-template", action="store_true", help="wrap prompts in the chat template")
    group.add_argument("--gen-length", type=int, default=None, help="tokens to decode (default: the task's, or 256)")
    group.add_argument("--include-path", action="append", default=[], help="a folder of task YAMLs (repeatable)")
    group.add_argument("--log-samples", action="store_true", help="keep every prompt and completion in the results")


def run_lm_tasks(args: argparse.Namespace) -> None:
    """Check the task names, load the target as an lm-eval model, run lm-eval, write the results."""
    # Imported here: lm-eval is an optional extra (`import dllm.harness` says how to install it).
    from lm_eval.utils import make_table

    from dllm.harness.model import DllmLM
    from dllm.harness.tasks_run import check_tasks, run_tasks, task_manager, write_results

    tasks = [name.strip() for name in args.tasks.split(",") if name.strip()]
    if not tasks:
        raise DllmError(f"--tasks {args.tasks!r}: name at least one lm-eval task, e.g. --tasks gsm8k")
    manager = task_manager(args.include_path)
    check_tasks(manager, tasks)
    lm = DllmLM(
        pretrained=args.target,
        overrides=args.overrides,
        gen_length=args.gen_length,
        seed=args.seed,
        batch_size=args.batch_size or 1,
    )
    results = run_tasks(
        lm, tasks, manager, num_fewshot=args.num_fewshot, limit=args.limit,
        apply_chat_template=args.apply_chat_template, log_samples=args.log_samples,
    )  # fmt: skip
    out_dir = args.output_dir or default_output_dir(lm, tasks, args)
    path = write_results(results, out_dir)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(path.read_text())
    print(make_table(results))
    logger.info("wrote %s", path)


def default_output_dir(lm, tasks: list[str], args: argparse.Namespace) -> Path:
    """One folder per (target, overrides, tasks, lm-eval options): the same evaluation lands in one place."""
    settings = [args.target, args.overrides, tasks, args.num_fewshot, args.limit, args.apply_chat_template,
                args.gen_length, args.seed, args.batch_size, args.include_path]  # fmt: skip
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    sampler = lm.target.config.sampler._target_.rsplit(".", 1)[-1]
    root = lm.target.run_dir / EVAL_DIR if lm.target.run_dir is not None else Path("outputs") / EVAL_DIR
    return root / f"lm_eval-{'+'.join(tasks)[:80]}-{sampler}-{digest}"
