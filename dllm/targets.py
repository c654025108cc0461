"""What `dllm-eval`, `dllm-generate` and the lm-evaluation-harness adapter load: a run
directory (its checkpoint, with its own config), a checkpoint directory, a LoRA adapter
directory, or a model preset (with the default config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dllm.config import COMPONENT_GROUPS, build_node, check_model_tokenizer, compose
from dllm.errors import ConfigError
from dllm.run_files import CHECKPOINT_DIR, CONFIG


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
    if (path / CONFIG).is_file():
        if not (path / CHECKPOINT_DIR).is_dir():
            raise ConfigError(
                f"run directory {target!r} has no {CHECKPOINT_DIR}/ yet; wait for the run to save one "
                f"(trainer.save_every) or point at a checkpoint directory"
            )
        config = OmegaConf.load(path / CONFIG)
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
    # A run's saved config is a plain mapping, so adding a key (`+key=value`) is editing one.
    return OmegaConf.from_dotlist([item.lstrip("+") for item in overrides])


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
