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
from dllm.errors import ConfigError
from dllm.run import plan

ROOT = Path(__file__).parents[2]
CONF = Path(dllm.__file__).parent / "conf"
CHECKPOINT_CONFIGS = {"TraDo-4B-Instruct": "sdar_config", "LLaDA-8B-Instruct": "llada_config"}  # stand-ins
RL_LOOP = "dllm.algorithms.rl.RL"
CPU_CHECKPOINT = re.compile(r"runs/cpu_sft_\w+/checkpoints/[\w-]+")
# The docs' commands in order: the full CPU sweep (two commands: one setting leaves out the preset
# it refuses), one per family on a GPU, then what ran here at CPU scale (one per setting).
FULL, GPU, CPU_SCALE = [0, 1], [2, 3], [4, 5, 6, 7]
SETTINGS = {"ablation_addition_llada", "ablation_addition_sdar", "ablation_sudoku_llada", "ablation_sudoku_sdar"}


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
            family = next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), None)
            fixture = str(ROOT / "tests" / "fixtures" / f"{family}_config")  # a CPU SFT checkpoint's stand-in
            commands.append([CPU_CHECKPOINT.sub(fixture, o) for o in overrides])
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


def experiments(commands: list[list[str]]) -> set[str]:
    return {e for c in commands for o in c if o.startswith("experiment=") for e in o.split("=", 1)[1].split(",")}


def test_the_docs_give_the_cpu_sweep_a_command_per_family_for_a_gpu_and_the_cpu_scale_run():
    commands = documented_commands()
    assert len(commands) == len(FULL + GPU + CPU_SCALE)
    assert experiments([commands[i] for i in FULL]) == SETTINGS
    assert experiments([commands[i] for i in CPU_SCALE]) == SETTINGS


def assert_every_preset_runs_in_every_setting_or_is_refused(points: list[list[str]]) -> None:
    """A preset a sweep leaves out of a setting is one the setting refuses before any work starts."""
    swept = {(o.split("=", 1)[1], algorithm(point)) for point in points for o in point if o.startswith("experiment=")}
    for experiment, preset in itertools.product(sorted(SETTINGS), sorted(every_rl_preset())):
        if (experiment, preset) not in swept:
            with pytest.raises(ConfigError, match=r"\S"):
                plan(compose([f"experiment={experiment}", f"algorithm={preset}"]))


def every_rl_preset() -> set[str]:
    return {
        path.stem
        for path in (CONF / "algorithm").glob("*.yaml")
        if compose([f"algorithm={path.stem}"]).algorithm.get("_target_") == RL_LOOP
    }


def contracts_of(points: list[list[str]]) -> dict[str, set[tuple]]:
    """Per setting (a point less its algorithm), the equal parts of its runs: completions per
    rollout, rollouts, rollouts between evaluations, temperature, sampler, task and lr; every
    point planned as dllm-train plans it (every key validated against its target)."""
    contracts = {}
    for point in points:
        cfg = compose(point)
        plan(cfg)
        rl, trainer = cfg.algorithm, cfg.trainer
        assert rl._target_ == RL_LOOP, f"{point}: not the RL loop; exclude offline presets from the glob"
        rollouts, rest = divmod(trainer.max_steps, rl.num_iterations)
        assert rest == 0 and trainer.batch_size == rl.group_size * rl.prompts_per_rollout
        setting = " ".join(o for o in point if not o.startswith("algorithm="))
        contract = (rl.group_size * rl.prompts_per_rollout, rollouts, trainer.eval_every // rl.num_iterations,
                    rl.temperature, str(cfg.sampler), str(cfg.task), trainer.lr)  # fmt: skip
        contracts.setdefault(setting, set()).add(contract)
    assert all(len(seen) == 1 for seen in contracts.values()), contracts  # one contract per setting
    return contracts


@pytest.mark.parametrize(
    "commands, contract, passes",
    [(FULL, (64, 100, 25, 1.0), None), (CPU_SCALE, (32, 20, 5, 1.0), 1)],
    ids=["full", "cpu_scale"],
)
def test_the_cpu_sweeps_run_every_preset_in_every_setting_it_does_not_refuse(commands, contract, passes):
    """The full sweep (each preset's own passes per rollout) and what ran here ("At CPU scale":
    each setting from its own SFT checkpoint, 20 rollouts of 4 x 8 completions, one pass each):
    3 seeds, one contract per setting (completions per rollout, rollouts, rollouts between
    evaluations, temperature), every preset a setting does not refuse."""
    documented = documented_commands()
    every_point = []
    for command in commands:
        points, seeds = sweep_points(documented[command])
        assert seeds == ["0", "1", "2"]
        assert {next(iter(seen))[:4] for seen in contracts_of(points).values()} == {contract}
        if passes is not None:
            assert all(compose(point).algorithm.num_iterations == passes for point in points)
        every_point += points
    assert_every_preset_runs_in_every_setting_or_is_refused(every_point)


@pytest.mark.parametrize("command", GPU, ids=["gpu_sdar", "gpu_llada"])
def test_every_point_of_a_gpu_command_composes_and_keeps_the_contract(command):
    points, seeds = sweep_points(documented_commands()[command])
    assert seeds == ["0", "1", "2"]
    swept = {algorithm(point) for point in points}
    assert swept == every_rl_preset() and {"tracerl", "diffu_grpo", "coupled_grpo", "wd1"} <= swept
    contracts_of(points)


def test_rollout_steps_counts_every_pass_and_a_partial_last_step():
    cfg = compose(["experiment=ablation_sudoku_llada", "algorithm=coupled_grpo", "trainer.batch_size=48"])
    assert cfg.algorithm.num_iterations == 2
    assert cfg.trainer.max_steps == 100 * 2 * 2  # 64 rows a pass: a step of 48 and one of 16
    assert cfg.trainer.eval_every == 25 * 2 * 2
