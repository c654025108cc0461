"""`dllm-eval`: accuracy of a model x sampler on a task's held-out split, with speed.

dllm-eval outputs/2026-11-25/10-00-00            # a training run: its model, sampler, task
dllm-eval outputs/.../run sampler.steps=4        # ... with edits of its config
dllm-eval llada_tiny task=addition sampler=llada # a preset or checkpoint + config groups
"""

from __future__ import annotations

import json
from pathlib import Path

from dllm.cli.common import reports_user_errors, setup_logging
from dllm.cli.runs import load_target_model, resolve_target, target_parser
from dllm.config import build_node, validate
from dllm.evaluation import evaluate


@reports_user_errors
def main(argv: list[str] | None = None) -> None:
    parser = target_parser("dllm-eval", __doc__)
    parser.add_argument("--batch-size", type=int, default=None, help="prompts per sampler call")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    setup_logging()

    target = resolve_target(args.target, args.overrides)
    cfg = target.config
    validate(cfg)
    model, tokenizer = load_target_model(target)
    result = evaluate(
        model,
        tokenizer,
        build_node(cfg.sampler),
        build_node(cfg.task),
        build_node(cfg.reward),
        batch_size=args.batch_size or cfg.trainer.eval_batch_size,
    )
    print(
        f"accuracy {result.accuracy:.4f} over {result.num_samples} prompts | mean length "
        f"{result.mean_length:.2f} tokens | {result.tokens_per_s:.1f} tokens/s | "
        f"{result.nfe_per_token:.3f} NFE/token"
    )
    if args.output is not None:
        args.output.write_text(json.dumps(result.__dict__, indent=2))


if __name__ == "__main__":
    main()
