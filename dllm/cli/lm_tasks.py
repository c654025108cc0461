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
    group.add_argument(
        "--fewshot-as-multiturn", action=argparse.BooleanOptionalAction, default=None,
        help="few-shot examples as chat turns (lm-eval's default with the template); --no-...: one user turn",
    )  # fmt: skip
    group.add_argument(
        "--model-args",
        default="",
        help="--model dllm arguments, e.g. mc_num=64,cfg=0.5,dtype=bfloat16 (docs/evaluation.md)",
    )
    group.add_argument("--gen-length", type=int, default=None, help="tokens to decode (default: the task's, or 256)")
    group.add_argument("--include-path", action="append", default=[], help="a folder of task YAMLs (repeatable)")
    group.add_argument("--log-samples", action="store_true", help="keep every prompt and completion in the results")


def run_lm_tasks(args: argparse.Namespace) -> None:
    """Check the task names, load the target as an lm-eval model, run lm-eval, write the results."""
    # Imported here: lm-eval is an optional extra (`import dllm.harness` says how to install it).
    from lm_eval.utils import make_table, simple_parse_args_string

    from dllm.harness.model import DllmLM
    from dllm.harness.tasks_run import check_tasks, run_tasks, task_manager, write_results

    tasks = [name.strip() for name in args.tasks.split(",") if name.strip()]
    if not tasks:
        raise DllmError(f"--tasks {args.tasks!r}: name at least one lm-eval task, e.g. --tasks gsm8k")
    refuse_held_out_options(args)
    model_args = simple_parse_args_string(args.model_args)
    if "pretrained" in model_args:
        raise DllmError("--model-args pretrained=...: dllm-eval's target (its first argument) is what it evaluates")
    check_override_keys(args.target, args.overrides)
    manager = task_manager(args.include_path)
    check_tasks(manager, tasks)
    settings = {"gen_length": args.gen_length, "seed": args.seed, "batch_size": args.batch_size}
    lm = DllmLM(
        pretrained=args.target,
        overrides=args.overrides,
        **{**{key: value for key, value in settings.items() if value is not None}, **model_args},
    )
    results = run_tasks(
        lm, tasks, manager, num_fewshot=args.num_fewshot, limit=args.limit,
        apply_chat_template=args.apply_chat_template, fewshot_as_multiturn=args.fewshot_as_multiturn,
        log_samples=args.log_samples,
    )  # fmt: skip
    out_dir = args.output_dir or default_output_dir(lm, tasks, args)
    path = write_results(results, out_dir)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(path.read_text())
    print(make_table(results))
    logger.info("wrote %s", path)


def refuse_held_out_options(args: argparse.Namespace) -> None:
    """Options of the held-out evaluation that lm-eval tasks would silently ignore."""
    given = [
        option
        for option, unset in (("--num-samples", args.num_samples == 1), ("--pass-at", args.pass_at is None),
                              ("--restart", not args.restart), ("--reward-timeout", args.reward_timeout is None))
        if not unset
    ]  # fmt: skip
    if given:
        raise DllmError(
            f"{', '.join(given)} belong to dllm-eval's own tasks, not to --tasks (lm-eval's settings: "
            f"--num-fewshot, --limit, --model-args, ... ; for repeats use the task YAML's `repeats`)"
        )


def check_override_keys(target: str, overrides: list[str]) -> None:
    """Refuse an override whose first key is not in the target's config: on a run directory it
    would add a key nothing reads (e.g. `mc_num=8`, which belongs in --model-args)."""
    from dllm.targets import resolve_target

    config = resolve_target(target, []).config
    for item in overrides:
        key = item.lstrip("+~").split("=", 1)[0].split(".", 1)[0].split("/", 1)[0]
        if key not in config:
            raise DllmError(
                f"override {item!r}: {key!r} is not a key of the run's config; --model dllm arguments go in "
                f"--model-args (e.g. --model-args {item})"
            )


def default_output_dir(lm, tasks: list[str], args: argparse.Namespace) -> Path:
    """One folder per (target, overrides, tasks, lm-eval options): the same evaluation lands in one place."""
    settings = [args.target, args.overrides, tasks, args.num_fewshot, args.limit, args.apply_chat_template,
                args.fewshot_as_multiturn, args.model_args, args.gen_length, args.seed, args.batch_size,
                args.include_path]  # fmt: skip
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    sampler = lm.target.config.sampler._target_.rsplit(".", 1)[-1]
    root = lm.target.run_dir / EVAL_DIR if lm.target.run_dir is not None else Path("outputs") / EVAL_DIR
    return root / f"lm_eval-{'+'.join(tasks)[:80]}-{sampler}-{digest}"
