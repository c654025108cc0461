"""Every config file composes, validates, and targets exactly what its registry key names."""

from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

import dllm
from dllm.config import compose
from dllm.errors import ConfigError
from dllm.registry import REGISTRIES, registry
from dllm.run import plan

CONF = Path(dllm.__file__).parent / "conf"
FIXTURES = Path(__file__).parents[1] / "fixtures"
COMPANIONS = {  # options valid only with a matching model, or with a required value
    "sampler=sdar": ["model=sdar_small"],
    "reward=judge": ["reward.judge=tests.unit.rewards.test_judge:digit_count_judge"],
    "algorithm/advantage=wd1": ["algorithm/objective=wd1"],  # wd1's weights and its objective go together
    "algorithm/objective=wd1": ["algorithm/advantage=wd1"],
    "algorithm/advantage=tree": ["algorithm.tree_branches=2"],  # d-TreeRPO's credit reads a tree rollout
    "algorithm/objective=sequence_ppo": ["algorithm/estimator=elbo"],  # a sequence's estimate whole, not trace's parts
    "algorithm/objective=spg": ["algorithm/estimator=block_mask"],  # SPG's EUBO comes from its block masking
    "algorithm=vrpo": ["task=preference"],  # preference optimisation trains on pairs
    "algorithm=dpo": ["task=preference"],
    **{  # RL from the default job's SFT checkpoint: addition_rl and the experiments built on it
        f"experiment={path.stem}": [f"model.pretrained={FIXTURES / 'addition_sft_tiny'}"]
        for path in (CONF / "experiment").glob("addition_*.yaml")
        if path.stem == "addition_rl" or "  - addition_rl\n" in path.read_text()
    },
}
PRETRAINED_ONLY = {f"model={family}": FIXTURES / f"{family}_config" for family in ("llada", "dream", "sdar")}
REGISTRY_GROUPS = {registry(kind).config_group: kind for kind in REGISTRIES}  # config group -> registry kind
RL_PARTS = ("algorithm/estimator", "algorithm/advantage", "algorithm/objective")
NESTED = {group: ["algorithm=rl"] for group in RL_PARTS}  # a nested group is chosen inside its parent's option
FILTER_GROUP = "algorithm/filter"  # options placed under algorithm.filters.NAME (any number at once)


def group_files(group):
    return sorted((CONF / group).glob("*.yaml"))


def choice(group, name):
    """The overrides that choose option `name` of `group`."""
    if group == FILTER_GROUP:
        return ["algorithm=rl", f"+{group}@algorithm.filters.{name}={name}"]
    return [*NESTED.get(group, []), f"{group}={name}"]


def composed(group, name):
    """The node of option `name` of `group`, composed as dllm-train would."""
    node = compose(choice(group, name) + COMPANIONS.get(f"{group}={name}", []))
    if group == FILTER_GROUP:
        return node.algorithm.filters[name]
    for part in group.split("/"):
        node = node[part]
    return node


@pytest.mark.parametrize("group", REGISTRY_GROUPS)
def test_every_yaml_targets_its_registry_key_or_is_a_preset_of_a_registered_component(group):
    files = group_files(group)
    assert files, f"conf/{group} is empty"
    kind = registry(REGISTRY_GROUPS[group])
    registered = {id(kind.get(name)) for name in kind.names()}
    for path in files:
        target = get_object(composed(group, path.stem)["_target_"])
        if path.stem in kind:
            assert target is kind.get(path.stem), f"{path} targets {target}"
        else:
            assert id(target) in registered, f"{path} is neither a registered name nor a preset of one"
            assert path.stem in kind.presets()


@pytest.mark.parametrize("group", REGISTRY_GROUPS)
def test_every_registry_key_has_a_config(group):
    kind = registry(REGISTRY_GROUPS[group])
    for name in kind.names():
        assert get_object(composed(group, name)._target_) is kind.get(name)


def options(group):
    return [p.stem for p in group_files(group)]


@pytest.mark.parametrize(
    "override",
    [f"{g}={name}" for g in ("model", "sampler", "algorithm", "reward", "task", "trainer") for name in options(g)]
    + [f"experiment={name}" for name in options("experiment")]
    + [f"{group}={name}" for group in (*RL_PARTS, FILTER_GROUP) for name in options(group)],
)
def test_every_option_composes_and_validates(override):
    overrides = choice(*override.split("=")) + COMPANIONS.get(override, [])
    if override in PRETRAINED_ONLY:
        overrides.append(f"model.pretrained={PRETRAINED_ONLY[override]}")
    plan(compose(overrides))


def test_experiments_are_deltas_with_global_package():
    for path in group_files("experiment"):
        assert path.read_text().startswith("# @package _global_"), path


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["+sampler.stepz=3"], r"unknown key sampler.stepz — did you mean 'steps'"),
        (["sampler.temperature=hot"], r"sampler.temperature='hot' has the wrong type: expected float"),
        (["sampler.remasking=high"], r"expected one of 'low_confidence', 'random'"),
        (["trainer.max_steps=1.5"], r"trainer.max_steps=1.5 has the wrong type: expected int"),
        (["+seeed=1"], r"unknown top-level key 'seeed' — did you mean 'seed'"),
        (["sampler.block_length=3"], r"gen_length \(8\) must be a multiple of block_length \(3\)"),
        (["sampler.block_length=2", "sampler.steps=6"], r"steps \(6\) must be a multiple of the number of blocks"),
        (["+model.n_layrs=2"], r"unknown model option 'n_layrs' — did you mean 'n_layers'"),
        (["model=llada"], r"model.pretrained is required"),
        (["trainer.batch_size=10", "trainer.grad_accum=3"], r"must be a multiple of trainer.grad_accum"),
        (["sampler=sdar"], r"the sdar sampler decodes block diffusion models; this model has no blocks"),
        (["sampler=sdar", "model=sdar_small", "sampler.block_length=3"], r"gen_length \(8\) must be a multiple of"),
        (
            ["sampler=sdar", "model=sdar_small", "sampler.confidence_threshold=1.5"],
            r"confidence_threshold must be in \(0, 1\]",
        ),
    ],
)
def test_bad_configs_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        cfg = compose(overrides)
        plan(cfg)


OPTIMIZER_KEYS = (
    "lr",
    "beta1",
    "beta2",
    "weight_decay",
    "warmup_steps",
    "warmup_ratio",
    "min_lr_ratio",
    "max_grad_norm",
)
PAPER_OPTIMIZERS = {  # preset -> (lr, beta2, weight decay, warmup steps resolved at 2000 steps, min lr ratio, clip)
    "rl": (1e-6, 0.999, 0.0, 0, 1.0, 1.0),
    "tracerl": (1e-6, 0.999, 0.0, 0, 1.0, 1.0),
    "tracerl_value": (1e-6, 0.999, 0.0, 0, 1.0, 1.0),
    "diffu_grpo": (3e-6, 0.99, 0.1, 0, 1.0, 0.2),
    "wd1": (3e-6, 0.99, 0.1, 0, 1.0, 0.2),
    "coupled_grpo": (1e-6, 0.99, 0.1, 0, 0.1, 0.2),
    "spg": (3e-6, 0.99, 0.1, 0, 1.0, 0.2),
    "bgpo": (5e-7, 0.999, 0.01, 0, 1.0, 1.0),
    "igpo": (5e-7, 0.99, 0.1, 50, 1.0, 0.2),
}


@pytest.mark.parametrize("preset", sorted(PAPER_OPTIMIZERS))
def test_an_rl_preset_trains_with_its_papers_optimizer_unless_told_otherwise(preset):
    from dllm.config import build_node

    trainer = build_node(compose([f"algorithm={preset}"]).trainer)
    got = (trainer.lr, trainer.beta2, trainer.weight_decay, trainer.warmup, trainer.min_lr_ratio, trainer.max_grad_norm)
    assert got == PAPER_OPTIMIZERS[preset]
    assert trainer.max_steps == 2000 and trainer.batch_size == 64  # the rest of the trainer is untouched
    # the command line, an experiment and another optimizer preset each win over the preset's
    assert compose([f"algorithm={preset}", "trainer.lr=2e-5"]).trainer.lr == 2e-5
    assert compose(["experiment=addition_tiny", f"algorithm={preset}"]).trainer.warmup_steps == 2
    assert compose([f"algorithm={preset}", "optim@trainer=d1"]).trainer.max_grad_norm == 0.2


def test_sft_keeps_the_trainer_defaults_and_every_optimizer_preset_sets_every_optimizer_key():
    defaults = compose([]).trainer
    assert (defaults.lr, defaults.weight_decay, defaults.warmup_steps) == (1e-3, 0.1, None)
    for path in group_files("optim"):
        node = compose(["algorithm=rl", f"optim@trainer={path.stem}"]).trainer
        assert set(OPTIMIZER_KEYS) <= set(OmegaConf.load(path)), f"{path} leaves an optimizer key to chance"
        plan(compose(["algorithm=rl", f"optim@trainer={path.stem}"]))
        assert node.lr == OmegaConf.load(path).lr
