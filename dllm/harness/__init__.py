"""dllm models in lm-evaluation-harness (`pip install 'dllm[eval]'`).

Importing this package registers `--model dllm` with lm-eval (`dllm.harness.model.DllmLM`).
lm-eval discovers models only by import, so the `dllm-lm-eval` command (lm-eval's own command
line after that import, with dllm's shipped tasks on the task path) and `dllm-eval RUN --tasks
...` are the ways in from a shell; from Python, `import dllm.harness` before
`lm_eval.simple_evaluate(model="dllm", ...)`.
"""

from __future__ import annotations

from pathlib import Path

from dllm.errors import DllmError

TASKS_DIR = Path(__file__).parent / "tasks"  # the shipped tasks (lm-eval's --include_path)

try:
    from lm_eval.api.registry import model_registry
except ImportError:
    raise DllmError("lm-eval is not installed: pip install 'dllm[eval]' (or pip install lm-eval)") from None

# Registered by name, as lm-eval registers its own models (it imports the class when a run asks
# for it); a second import of this package (a reload) finds the name taken and leaves it.
if "dllm" not in model_registry:
    model_registry.register("dllm", target="dllm.harness.model:DllmLM")

from dllm.harness.model import DllmLM  # noqa: E402

__all__ = ["DllmLM", "TASKS_DIR"]
