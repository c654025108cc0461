from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

SFT = Path(__file__).parents[2] / "fixtures" / "addition_sft_tiny"  # llada_tiny after SFT on addition
SHIPPED = ("dllm_addition", "dllm_addition_mc")


@pytest.fixture(scope="session")
def shipped_manager():
    """lm-eval's task manager over dllm's shipped tasks only (indexing lm-eval's ~15k tasks takes
    seconds; the commands include them, tests that need none do not)."""
    from lm_eval.tasks import TaskManager

    from dllm.harness import TASKS_DIR

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
