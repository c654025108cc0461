"""The fair ablation's sweep commands, as docs/rl.md writes them, compose and validate at every
point, and every point keeps the contract (docs/rl.md, "The fair ablation")."""

import itertools
import re
import shlex
from pathlib import Path

import pytest
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

import dllm
from dllm.config import compose
from dllm.config_files import CONF_MODULE
from dllm.run import plan

ROOT = Path(__file__).parents[2]
CONF = Path(dllm.__file__).parent / "conf"
CHECKPOINT_CONFIGS = {"TraDo-4B-Instruct": "sdar_config", "LLaDA-8B-Instruct": "llada_config"}  # stand-ins
RL_LOOP = "dllm.algorithms.rl.RL"


def documented_commands() -> list[list[str]]:
    """The overrides of each `dllm-train -m` command of the section, checkpoint paths replaced by
    the test fixtures' configs of the same families, the output and launcher settings left out."""
    section = (ROOT / "docs" / "rl.md").read_text().split("## The fair ablation\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if "dllm-train -m" not in line:
                continue
            words = shlex.split(line.split("dllm-train -m", 1)[1], comments=True)
            overrides = [w for w in words if "=" in w and not w.startswith(("hydra.", "hydra/"))]
            for name, fixture in CHECKPOINT_CONFIGS.items():
                overrides = [o.replace(f"PATH/{name}", str(ROOT / "tests" / "fixtures" / fixture)) for o in overrides]
            commands.append(overrides)
    return commands


def sweep_points(overrides: list[str]) -> tuple[list[list[str]], list[str]]:
    """Every run of a multirun, as Hydra's sweeper expands it (a glob over a group: the group's
    options, plugins' included), with the seeds left out (they change no config key this test
    reads); and the seeds."""
    with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        parsed = parser.parse_overrides(overrides)
    axes, seeds = [], []
    for override in parsed:
        key = override.get_key_element()
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else None
        if key == "seed":
            seeds = values
        else:
            axes.append([f"{key}={value}" for value in values] if values else [override.input_line])
    return [list(point) for point in itertools.product(*axes)], seeds


def algorithm(point: list[str]) -> str:
    return next(o.split("=", 1)[1] for o in point if o.startswith("algorithm="))


def test_the_docs_give_the_cpu_sweep_and_a_command_per_family_for_a_gpu():
    commands = documented_commands()
    assert len(commands) == 3
    settings = [o for o in commands[0] if o.startswith("experiment=")][0].split("=", 1)[1].split(",")
    assert sorted(settings) == ["ablation_addition_llada", "ablation_addition_sdar", "ablation_sudoku_llada",
                                "ablation_sudoku_sdar"]  # fmt: skip


@pytest.mark.parametrize("command", range(3), ids=["cpu", "gpu_sdar", "gpu_llada"])
def test_every_point_of_the_documented_sweep_composes_and_keeps_the_contract(command):
    points, seeds = sweep_points(documented_commands()[command])
    assert seeds == ["0", "1", "2"]
    swept = {algorithm(point) for point in points}
    every_rl_preset = {
        path.stem
        for path in (CONF / "algorithm").glob("*.yaml")
        if compose([f"algorithm={path.stem}"]).algorithm.get("_target_") == RL_LOOP
    }
    assert swept == every_rl_preset and {"tracerl", "diffu_grpo", "coupled_grpo", "wd1"} <= swept
    contracts = {}
    for point in points:
        cfg = compose(point)
        plan(cfg)  # validates every key against its target, as dllm-train does before any model is built
        rl, trainer = cfg.algorithm, cfg.trainer
        assert rl._target_ == RL_LOOP, f"{point}: not the RL loop; exclude offline presets from the glob"
        rollouts, rest = divmod(trainer.max_steps, rl.num_iterations)
        assert rest == 0 and trainer.batch_size == rl.group_size * rl.prompts_per_rollout
        setting = " ".join(o for o in point if not o.startswith("algorithm="))
        contract = (rl.group_size * rl.prompts_per_rollout, rollouts, trainer.eval_every // rl.num_iterations,
                    rl.temperature, str(cfg.sampler), str(cfg.task), trainer.lr)  # fmt: skip
        contracts.setdefault(setting, set()).add(contract)
    assert all(len(seen) == 1 for seen in contracts.values()), contracts  # one contract per setting
    if command == 0:
        assert {next(iter(seen))[:4] for seen in contracts.values()} == {(64, 100, 25, 1.0)}


def test_rollout_steps_counts_every_pass_and_a_partial_last_step():
    cfg = compose(["experiment=ablation_sudoku_llada", "algorithm=coupled_grpo", "trainer.batch_size=48"])
    assert cfg.algorithm.num_iterations == 2
    assert cfg.trainer.max_steps == 100 * 2 * 2  # 64 rows a pass: a step of 48 and one of 16
    assert cfg.trainer.eval_every == 25 * 2 * 2
