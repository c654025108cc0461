"""Resolving what `dllm-eval` and `dllm-generate` point at: a run directory, a checkpoint
directory, or a model preset."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dllm.checkpoint import CHECKPOINT_DIR
from dllm.config import COMPONENT_GROUPS, build_node, check_model_tokenizer, compose
from dllm.errors import ConfigError

RUN_CONFIG = "config.yaml"


@dataclass
class Target:
    """`model` is a checkpoint directory or preset name; `config` the run's (or default) config."""

    model: str
    config: DictConfig
    run_dir: Path | None


def resolve_target(target: str, overrides: list[str]) -> Target:
    """A run directory brings its own config (`group=option` swaps a component, `key=value`
    edits a value); anything else composes the default config with `overrides`."""
    path = Path(target)
    if (path / RUN_CONFIG).is_file():
        if not (path / CHECKPOINT_DIR).is_dir():
            raise ConfigError(
                f"run directory {target!r} has no {CHECKPOINT_DIR}/ yet; wait for the run to save one "
                f"(trainer.save_every) or point at a checkpoint directory"
            )
        config = OmegaConf.load(path / RUN_CONFIG)
        choices = [item for item in overrides if item.split("=", 1)[0] in COMPONENT_GROUPS]
        for choice in choices:  # `sampler=sdar`: that option's whole config replaces the run's
            group = choice.split("=", 1)[0]
            config[group] = compose([choice])[group]
        edits = _dotlist([item for item in overrides if item not in choices])
        return Target(str(path / CHECKPOINT_DIR), OmegaConf.merge(config, edits), path)
    return Target(target, compose(overrides), None)


def _dotlist(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. sampler.steps=4)")
    return OmegaConf.from_dotlist(overrides)


def target_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A parser taking what to load (`target`) and config `overrides`, as both commands do."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("target", help="run directory, checkpoint directory, or model preset")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value (e.g. sampler.steps=8)")
    return parser


def load_target_model(target: Target):
    """The target's model (in eval mode, on the run's device) and its own tokenizer, checked
    against each other."""
    from dllm.models.base import load_model
    from dllm.tokenizer import load_tokenizer

    device = build_node(target.config.trainer).resolve_device()
    model = load_model(target.model).eval().to(device)
    tokenizer = load_tokenizer(target.model)
    check_model_tokenizer(model, tokenizer)
    return model, tokenizer
