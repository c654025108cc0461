"""`dllm-lm-eval`: lm-evaluation-harness's own command line, with `--model dllm` registered
and dllm's shipped tasks (dllm_addition, dllm_addition_mc) on its task path. Every lm-eval
option works as in `lm-eval run` (`pip install 'dllm[eval]'`).

    dllm-lm-eval --model dllm --model_args pretrained=RUN_DIR --tasks dllm_addition,dllm_addition_mc
    dllm-lm-eval --model dllm --tasks gsm8k --num_fewshot 5 --batch_size 8 \\
        --model_args pretrained=CKPT,sampler=fast_dllm,threshold=0.9,gen_length=256,block_length=32

The model arguments are in `dllm.harness.model`; docs/evaluation.md has the reproductions.
"""

from __future__ import annotations

import sys

from dllm.cli.common import reports_user_errors
from dllm.errors import DllmError


def with_shipped_tasks(argv: list[str]) -> list[str]:
    """`argv` with dllm's task folder as `--include_path` when none is given (lm-eval takes one
    folder; a run that names its own reaches dllm's tasks by their YAML paths)."""
    from dllm.harness import TASKS_DIR

    if any(arg == "--include_path" or arg.startswith("--include_path=") for arg in argv):
        return argv
    return [*argv, "--include_path", str(TASKS_DIR)]


@reports_user_errors
def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Imported here, not at the top: lm-eval is an optional extra, and `import dllm.harness`
    # says how to install it.
    from lm_eval.__main__ import cli_evaluate

    import dllm.harness  # noqa: F401  (registers --model dllm)

    if argv and argv[0] not in ("-h", "--help", "run", "ls", "validate"):
        argv = ["run", *argv]  # lm-eval's own legacy form: options without a subcommand mean `run`
    if argv[:1] == ["run"]:
        argv = with_shipped_tasks(argv)
    sys.argv = ["dllm-lm-eval", *argv]
    try:
        cli_evaluate()
    except ValueError as exc:  # lm-eval's unknown-task error, raised with a traceback
        if not str(exc).startswith("Tasks not found"):
            raise
        raise DllmError(f"{exc}; list them with `dllm-lm-eval ls tasks`, or add a folder with --include_path") from None


if __name__ == "__main__":
    main()
