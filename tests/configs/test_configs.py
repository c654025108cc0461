"""Every config file composes, validates, and targets exactly what its registry key names."""

from pathlib import Path

import pytest
from hydra.utils import get_object

import dllm
from dllm.config import compose, validate
from dllm.errors import ConfigError
from dllm.registry import registry

CONF = Path(dllm.__file__).parent / "conf"
FIXTURES = Path(__file__).parents[1] / "fixtures"
COMPANIONS = {  # options valid only with a matching model, or with a required value
    "sampler=sdar": ["model=sdar_small"],
    "reward=judge": ["reward.judge=tests.unit.rewards.test_judge:digit_count_judge"],
}
PRETRAINED_ONLY = {f"model={family}": FIXTURES / f"{family}_config" for family in ("llada", "dream", "sdar")}
REGISTRY_GROUPS = {  # config group -> registry kind
    "model": "model",
    "sampler": "sampler",
    "algorithm": "algorithm",
    "reward": "reward",
    "task": "task",
    "algorithm/estimator": "estimator",
}
NESTED = {"algorithm/estimator": ["algorithm=rl"]}  # a nested group is chosen inside its parent's option


def group_files(group):
    return sorted((CONF / group).glob("*.yaml"))


def composed(group, name):
    """The node of option `name` of `group`, composed as dllm-train would."""
    node = compose([*NESTED.get(group, []), f"{group}={name}"] + COMPANIONS.get(f"{group}={name}", []))
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
    + [f"algorithm/estimator={name}" for name in options("algorithm/estimator")],
)
def test_every_option_composes_and_validates(override):
    overrides = NESTED.get(override.split("=")[0], []) + [override] + COMPANIONS.get(override, [])
    if override in PRETRAINED_ONLY:
        overrides.append(f"model.pretrained={PRETRAINED_ONLY[override]}")
    validate(compose(overrides))


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
        validate(cfg)
