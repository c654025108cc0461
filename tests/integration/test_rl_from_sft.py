"""RL from a trained SFT checkpoint of the default job: every RL preset, run as its shipped CPU
experiment (`experiment=addition_<preset>`), leaves the held-out accuracy no lower than the SFT
model's, and together they raise it. The checkpoint is the default job at the tiny size (tests/fixtures/
addition_sft_tiny, 0.69 held-out), so the task leaves room; 20 of the experiment's 40 steps keep
the suite short. docs/rl.md has the same measured at the default size, over seeds."""

import json
from pathlib import Path

import pytest

from tests.integration.conftest import run_cli

SFT = Path(__file__).parents[1] / "fixtures" / "addition_sft_tiny"
PRESETS = ["rl", "tracerl", "tracerl_value", "diffu_grpo", "coupled_grpo", "wd1"]
AFTER: dict[str, float] = {}  # preset -> held-out accuracy after its run, for the average


def accuracy(directory: Path) -> float:
    return json.loads((directory / "eval.json").read_text())["accuracy"]


@pytest.fixture(scope="module")
def before(tmp_path_factory) -> float:
    out = tmp_path_factory.mktemp("sft_eval")
    run_cli("dllm-eval", SFT, "task=addition", "--output-dir", out, env={"OMP_NUM_THREADS": "1"})
    return accuracy(out)


def test_the_sft_checkpoint_leaves_room(before):
    assert 0.6 <= before <= 0.8


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_rl_from_the_default_jobs_sft_checkpoint_does_not_lower_held_out_accuracy(preset, before, tmp_path):
    run_cli(
        "dllm-train", f"experiment=addition_{preset}", f"model.pretrained={SFT}", "trainer.max_steps=20",
        "trainer.save_every=0", f"hydra.run.dir={tmp_path}", env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    AFTER[preset] = accuracy(tmp_path)
    assert AFTER[preset] >= before


def test_the_presets_raise_held_out_accuracy_on_average(before):
    if len(AFTER) < len(PRESETS):
        pytest.skip("needs every preset's run (run the whole module)")
    assert sum(AFTER.values()) / len(AFTER) >= before + 0.01, AFTER
