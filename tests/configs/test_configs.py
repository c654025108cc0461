"""Every config file composes, validates, and targets exactly what its registry key names."""

from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

import dllm
from dllm.config import compose, validate
from dllm.errors import ConfigError
from dllm.registry import registry

CONF = Path(dllm.__file__).parent / "conf"
FIXTURES = Path(__file__).parents[1] / "fixtures"
COMPANIONS = {"sampler=sdar": ["model=sdar_small"]}  # options valid only with a matching model
PRETRAINED_ONLY = {f"model={family}": FIXTURES / f"{family}_config" for family in ("llada", "dream", "sdar")}
REGISTRY_GROUPS = ("model", "sampler", "algorithm", "reward", "task")


def group_files(group):
    return sorted((CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group", REGISTRY_GROUPS)
def test_every_yaml_targets_its_registry_key(group):
    files = group_files(group)
    assert files, f"conf/{group} is empty"
    for path in files:
        target = OmegaConf.load(path)["_target_"]
        assert get_object(target) is registry(group).get(path.stem), f"{path} targets {target}"


@pytest.mark.parametrize("group", REGISTRY_GROUPS)
def test_every_registry_key_has_a_config(group):
    for name in registry(group).names():
        cfg = compose([f"{group}={name}"] + COMPANIONS.get(f"{group}={name}", []))
        assert get_object(cfg[group]._target_) is registry(group).get(name)


def options(group):
    return [p.stem for p in group_files(group)]


@pytest.mark.parametrize(
    "override",
    [f"{g}={name}" for g in ("model", "sampler", "algorithm", "reward", "task", "trainer") for name in options(g)]
    + [f"experiment={name}" for name in options("experiment")],
)
def test_every_option_composes_and_validates(override):
    overrides = [override] + COMPANIONS.get(override, [])
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
        (["sampler=sdar", "model=sdar_small", "sampler.block_length=8"], r"must equal the model's block_size \(4\)"),
        (
            ["sampler=sdar", "model=sdar_small", "sampler.confidence_threshold=1.5"],
            r"confidence_threshold must be in \(0, 1\]",
        ),
        (
            ["sampler=llada", "model=sdar_small", "sampler.block_length=2"],
            r"must be a multiple of the model's block_size",
        ),
    ],
)
def test_bad_configs_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        cfg = compose(overrides)
        validate(cfg)
