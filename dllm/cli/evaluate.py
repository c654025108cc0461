"""`dllm-eval`: a model x sampler on a task's held-out split — accuracy, mean reward, pass@k,
response length, tokens/s, NFE per token — written to eval.json and eval.md. A killed
evaluation rerun with the same arguments continues where it stopped.

dllm-eval outputs/2026-11-25/10-00-00            # a training run: its model, sampler, task
dllm-eval outputs/.../run sampler.steps=4        # ... with edits of its config
dllm-eval llada_tiny task=addition sampler=llada # a preset or checkpoint + config groups
dllm-eval /ckpt task=gsm8k_file reward=gsm8k task.eval_file=test.jsonl --num-samples 8 --pass-at 1,8
dllm-eval outputs/.../run --tasks dllm_addition,dllm_addition_mc  # lm-eval tasks (pip install 'dllm[eval]')
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from dllm.cli.common import reports_user_errors, setup_logging
from dllm.cli.lm_tasks import add_task_options, run_lm_tasks
from dllm.cli.runs import parse_target_args, target_parser
from dllm.errors import DllmError
from dllm.evaluation import EvalResult, evaluate, markdown_table
from dllm.registry import registry
from dllm.run import plan_evaluation
from dllm.run_files import EVAL, EVAL_DIR, EVAL_PROGRESS, EVAL_TABLE
from dllm.targets import Target, load_target_model, resolve_target
from dllm.trainer_config import TrainerConfig

logger = logging.getLogger("dllm.eval")

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def parse_pass_at(text: str | None) -> list[int] | None:
    """`"1,5"` -> [1, 5]; None stays None (the default: 1 and the samples per prompt)."""
    if text is None:
        return None
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DllmError(f"--pass-at {text!r}: give comma-separated positive integers, e.g. --pass-at 1,5") from None
    if not ks or min(ks) < 1:
        raise DllmError(f"--pass-at {text!r}: give comma-separated positive integers, e.g. --pass-at 1,5")
    return ks


def use_target_tokenizer(cfg: DictConfig, target: Target, overrides: list[str]) -> None:
    """A file task wraps prompts in the chat template of the tokenizer dllm-eval loads (the
    target checkpoint's), unless `task.tokenizer=...` is given on the command line."""
    task = cfg.task
    if "tokenizer" not in task or "chat_template" not in task:
        return
    if any(item.split("=", 1)[0].lstrip("+") == "task.tokenizer" for item in overrides):
        return
    if Path(target.model).is_dir():
        task.tokenizer = target.model


def weights_signature(model: str) -> list[Any]:
    """Names, sizes and modification times of a checkpoint directory's weight files (a preset: its name)."""
    path = Path(model)
    if not path.is_dir():
        return [model]
    return sorted(
        (item.name, item.stat().st_size, item.stat().st_mtime_ns)
        for item in path.iterdir()
        if item.is_file() and item.suffix in WEIGHT_SUFFIXES
    )


def component_name(cfg: DictConfig, group: str) -> str:
    """The registry name of the component a config node builds (e.g. `llada`, `file`)."""
    from hydra.utils import get_object

    kind = {"task": "task", "sampler": "sampler", "reward": "reward"}[group]
    return registry(kind).name_of(get_object(cfg[group]._target_)) or cfg[group]._target_.rsplit(".", 1)[-1]


def evaluation_fingerprint(cfg: DictConfig, target: Target, seed: int, samples: int, batch_size: int) -> str:
    """A hash of everything that decides the results: the resolved model, sampler, task and
    reward configs, the checkpoint's weight files, the seed, samples per prompt, batch size."""
    sections = {g: OmegaConf.to_container(cfg[g], resolve=True) for g in ("model", "sampler", "task", "reward")}
    content = {
        **sections,
        "tokenizer": cfg.get("tokenizer"),
        "target": target.model,
        "weights": weights_signature(target.model),
        "seed": seed,
        "samples_per_prompt": samples,
        "batch_size": batch_size,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:12]


def default_output_dir(cfg: DictConfig, target: Target, samples: int, fingerprint: str) -> Path:
    """RUN/eval/NAME for a run directory, else outputs/eval/NAME, with NAME =
    TASK-SAMPLER-nSAMPLES-HASH: the same evaluation always lands (and resumes) in one place."""
    name = f"{component_name(cfg, 'task')}-{component_name(cfg, 'sampler')}-n{samples}-{fingerprint[:8]}"
    root = target.run_dir / EVAL_DIR if target.run_dir is not None else Path("outputs") / EVAL_DIR
    return root / name


def setup_lines(cfg: DictConfig, target: Target, args: Any, batch_size: int) -> dict[str, str]:
    def options(group: str) -> str:
        values = OmegaConf.to_container(cfg[group], resolve=True)
        shown = ", ".join(f"{k}={v}" for k, v in values.items() if not k.startswith("_") and not isinstance(v, dict))
        return f"{component_name(cfg, group)} ({shown})" if shown else component_name(cfg, group)

    return {
        "model": target.model,
        "sampler": options("sampler"),
        "task": options("task"),
        "reward": options("reward"),
        "seed": str(args.seed),
        "batch size": str(batch_size),
    }


def summary_line(result: EvalResult) -> str:
    over = f"{result.num_prompts} prompts"
    if result.samples_per_prompt > 1:
        over += f" x {result.samples_per_prompt} samples"
    parts = [f"accuracy {result.accuracy:.4f} over {over}", f"mean reward {result.mean_reward:.4f}"]
    parts += [f"{name} {value:.4f}" for name, value in result.pass_at_k.items()]
    parts += [
        f"mean length {result.mean_length:.2f} tokens",
        f"{result.tokens_per_s:.1f} tokens/s",
        f"{result.nfe_per_token:.3f} NFE/token",
    ]
    return " | ".join(parts)


@reports_user_errors
def main(argv: list[str] | None = None) -> None:
    parser = target_parser("dllm-eval", __doc__)
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per sampler call")
    parser.add_argument("--num-samples", type=int, default=1, help="completions per prompt (n of pass@k)")
    parser.add_argument("--pass-at", default=None, help="k values of pass@k, e.g. 1,5 (default: 1 and --num-samples)")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the draws (default 0, as dllm-train evaluates; --tasks: 1234)"
    )
    parser.add_argument("--output-dir", type=Path, default=None, help="where eval.json, eval.md and progress go")
    parser.add_argument("--output", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--restart", action="store_true", help="discard the saved progress of this evaluation")
    parser.add_argument("--reward-timeout", type=float, default=None, help="seconds per reward call (0 scored past it)")
    add_task_options(parser)
    args = parse_target_args(parser, argv)
    setup_logging()
    if args.tasks is not None:
        return run_lm_tasks(args)
    args.seed = 0 if args.seed is None else args.seed
    if args.num_samples < 1 or (args.batch_size is not None and args.batch_size < 1):
        raise DllmError("--num-samples and --batch-size must be positive")
    pass_at = parse_pass_at(args.pass_at)

    target = resolve_target(args.target, args.overrides)
    cfg = target.config
    use_target_tokenizer(cfg, target, args.overrides)
    task, sampler, reward = plan_evaluation(cfg)
    batch_size = args.batch_size or cfg.trainer.eval_batch_size
    max_batch_rows = cfg.trainer.get("max_batch_rows", TrainerConfig.max_batch_rows)
    fingerprint = evaluation_fingerprint(cfg, target, args.seed, args.num_samples, batch_size)
    out_dir = args.output_dir or default_output_dir(cfg, target, args.num_samples, fingerprint)
    progress = out_dir / EVAL_PROGRESS
    if args.restart and progress.exists():
        progress.unlink()
    torch.manual_seed(args.seed)  # a preset's random weights are the same on every run, so resuming is sound
    model, tokenizer = load_target_model(target)
    result = evaluate(
        model,
        tokenizer,
        sampler,
        task,
        reward,
        batch_size=batch_size,
        seed=args.seed,
        samples_per_prompt=args.num_samples,
        pass_at=pass_at,
        progress_path=progress,
        fingerprint=fingerprint,
        reward_timeout_s=args.reward_timeout,
        show_progress=True,
        max_batch_rows=max_batch_rows,
    )
    setup = setup_lines(cfg, target, args, batch_size)
    payload = json.dumps({**asdict(result), "setup": setup}, indent=2)
    (out_dir / EVAL).write_text(payload)
    (out_dir / EVAL_TABLE).write_text("# dllm-eval\n\n" + markdown_table(result, setup))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(payload)
    print(summary_line(result))
    logger.info("wrote %s and %s", out_dir / EVAL, out_dir / EVAL_TABLE)


if __name__ == "__main__":
    main()
