"""Composing run configurations, checking a node against its target's signature, and
building components from them. `dllm.run.plan` checks a whole run with these, before any
model is built; each error names the key and the fix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from dllm.config_files import CONF_MODULE
from dllm.errors import ConfigError, DllmError, UnknownNameError, did_you_mean
from dllm.registry import registry
from dllm.signatures import check_node

TRAIN_CONFIG = "train"
COMPONENT_GROUPS = ("model", "sampler", "algorithm", "task", "reward", "trainer")


def rollout_steps(rollouts: int, *, _root_: DictConfig) -> int:
    """`${dllm.rollout_steps:N}` in a run config: the optimizer steps in which the RL loop draws N
    rollouts — N x its passes per rollout (`algorithm.num_iterations`) x the steps per pass
    (rollout rows / `trainer.batch_size`, rounded up, every row kept) — so that a step budget
    (`trainer.max_steps`, `trainer.eval_every`) is a rollout budget whatever the preset's mu."""
    algorithm, trainer = _root_.algorithm, _root_.trainer
    rows = int(algorithm.group_size) * int(algorithm.prompts_per_rollout)
    return int(rollouts) * int(algorithm.num_iterations) * -(-rows // int(trainer.batch_size))


RUN_NAME_LIMIT = 120


def run_dirname(overrides: str) -> str:
    """`${dllm.run_dirname:${hydra.job.override_dirname}}`: a sweep run's directory name, its
    overrides cut at RUN_NAME_LIMIT bytes plus a hash of them all when longer — a file name
    holds at most 255 bytes, and a sweep of a few long overrides (paths excluded, rollout budgets,
    a preset's name) passed it and stopped the whole sweep. dllm-compare names each run from its
    `.hydra/overrides.yaml`, never from the directory."""
    encoded = overrides.encode()  # the limit is in bytes: a non-ASCII value takes several
    if len(encoded) <= RUN_NAME_LIMIT:
        return overrides
    return f"{encoded[:RUN_NAME_LIMIT].decode(errors='ignore')}_{hashlib.sha256(encoded).hexdigest()[:10]}"


if not OmegaConf.has_resolver("dllm.rollout_steps"):
    OmegaConf.register_new_resolver("dllm.rollout_steps", rollout_steps)
if not OmegaConf.has_resolver("dllm.run_dirname"):
    OmegaConf.register_new_resolver("dllm.run_dirname", run_dirname)


def compose(overrides: Sequence[str] = (), config_name: str = TRAIN_CONFIG) -> DictConfig:
    """The composed run config, as `dllm-train` would see it (for tests and notebooks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import ConfigCompositionException, MissingConfigException

    reject_reward_list(overrides)
    try:
        with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (ConfigCompositionException, MissingConfigException) as exc:
        raise composition_error(exc) from None


def first_run(overrides: Sequence[str]) -> list[str]:
    """The overrides of a sweep's first run: each `key=a,b,...` (or other sweep) at its first
    value, the rest as given. Raises Hydra's own error on text its grammar does not parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [
        f"{o.get_key_element()}={next(o.sweep_string_iterator())}" if o.is_sweep_override() else o.input_line
        for o in parsed
    ]


def composition_error(exc: Exception) -> DllmError:
    """Hydra's multi-line composition error as dllm's one line: an unknown option of a group
    names the known ones, an unknown key the closest existing keys (Hydra would suggest adding
    the typo with `+`)."""
    missing = getattr(exc, "missing_cfg_file", None)
    options = getattr(exc, "options", None)
    if missing and "/" in missing and options is not None:
        group, name = missing.rsplit("/", 1)
        hint = (
            "; the joblib and submitit launchers come with the sweeps extra: pip install -e '.[sweeps]'"
            if group == "hydra/launcher"
            else ""
        )
        return UnknownNameError(
            f"unknown {group} {name!r}{did_you_mean(name, options)} known: {', '.join(options)}{hint}"
        )
    cause = exc.__cause__
    parent = getattr(cause, "parent_node", None)
    full_key = getattr(cause, "full_key", None)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and isinstance(parent, DictConfig) and full_key:
        prefix = full_key[: -len(str(cause.key))]
        keys = [str(key) for key in parent if not str(key).startswith("_")]
        suggestion = did_you_mean(str(cause.key), keys, prefix)
        if suggestion:
            return ConfigError(f"{full_key}: no such key{suggestion}")
        known = ", ".join(prefix + key for key in keys) or "none"
        return ConfigError(f"{full_key}: no such key (known: {known}); +{full_key}=VALUE adds a key")
    return ConfigError(" ".join(line.strip() for line in str(exc).splitlines() if line.strip()))


def reject_reward_list(overrides: Sequence[str]) -> None:
    """Refuse `reward=[a,b]`: Hydra would merge both configs into one node (one `_target_`,
    the other's keys), which is never what was meant; name the composition that sums them."""
    for override in overrides:
        key, _, value = override.partition("=")
        value = value.strip()
        if key.lstrip("+~") == "reward" and value.startswith("["):
            names = [name.strip() for name in value.strip("[]").split(",") if name.strip()]
            terms = ", ".join(f"{name}: 1.0" for name in names)
            raise ConfigError(
                f"{override} would merge the configs of {' and '.join(names)} into one reward; "
                f"sum rewards with reward=weighted_sum reward.terms='{{{terms}}}'"
            )


def build(kind: str, name: str, **kwargs: Any) -> Any:
    """Component `name` of `kind` built with `kwargs`: `build("sampler", "llada", steps=8)`. A name
    that is not registered but a YAML preset of the kind's config group (e.g. `diffu_grpo`, the
    `rl` algorithm with d1's hyper-parameters) is built from its YAML, `kwargs` overriding its values."""
    kind_registry = registry(kind)
    if name not in kind_registry and name in kind_registry.presets():
        return build_preset(kind_registry.config_group, name, kwargs)
    return kind_registry.build(name, **kwargs)


def build_preset(group: str, name: str, overrides: dict[str, Any]) -> Any:
    """The component the YAML preset `group=name` describes, with `overrides` of its values."""
    node = compose([f"{group}={name}"])
    for part in group.split("/"):
        node = node[part]
    node = OmegaConf.merge(node, overrides)
    check_node(group.replace("/", "."), node)
    return build_node(node)


def build_node(node: DictConfig) -> Any:
    """`hydra.utils.instantiate`, re-raising a component's own `DllmError` unwrapped."""
    try:
        return instantiate(node)
    except InstantiationException as exc:
        if isinstance(exc.__cause__, DllmError):
            raise exc.__cause__ from None
        raise


def build_reward(node: DictConfig) -> Any:
    """The reward `node` describes, its signature checked (see `dllm.rewards.base.checked_reward`)."""
    from dllm.rewards.base import checked_reward

    return checked_reward(build_node(node))


def resolve_tokenizer(cfg: DictConfig):
    """`cfg.tokenizer`, else the pretrained checkpoint's tokenizer, else the character one."""
    from dllm.tokenizer import CHAR_TOKENIZER_NAME, load_tokenizer

    name = cfg.get("tokenizer") or cfg.model.get("pretrained") or CHAR_TOKENIZER_NAME
    return load_tokenizer(name)


def check_model_tokenizer(model, tokenizer) -> None:
    """Refuse a tokenizer whose ids the model cannot embed, or whose mask token differs. A
    tokenizer that names no mask token gets the model's, when it has that id."""
    embeddings = model.get_input_embeddings().num_embeddings
    if tokenizer.mask_token_id is None:
        if model.mask_token_id >= len(tokenizer):
            raise ConfigError(
                f"the tokenizer ({getattr(tokenizer, 'name_or_path', '?')}) has no mask token and no token with "
                f"the model's mask_token_id {model.mask_token_id}; use a tokenizer with a mask token"
            )
        tokenizer.mask_token = tokenizer.convert_ids_to_tokens(model.mask_token_id)
    if len(tokenizer) > embeddings:
        raise ConfigError(
            f"the tokenizer has {len(tokenizer)} tokens but the model embeds only {embeddings}; "
            f"use the model's own tokenizer (tokenizer=null)"
        )
    if tokenizer.mask_token_id is not None and tokenizer.mask_token_id != model.mask_token_id:
        raise ConfigError(
            f"the tokenizer's mask token id ({tokenizer.mask_token_id}) differs from the model's "
            f"mask_token_id ({model.mask_token_id}); use the model's own tokenizer (tokenizer=null)"
        )


CONTEXT_SAMPLES = 64  # training draws checked for a task that cannot list its prompts


def check_context(task, tokenizer, model) -> None:
    """Refuse, before training, a prompt that with `task.gen_length` new tokens does not fit the
    model's context: every prompt of a task that lists them (`located_prompts`, a file task),
    else the held-out prompts and `CONTEXT_SAMPLES` training draws. Names the longest."""
    import random

    from dllm.models.base import context_length

    context = context_length(model)
    if not context:
        return
    if hasattr(task, "located_prompts"):
        located = list(task.located_prompts())
    else:
        rng = random.Random(0)
        located = [(f"held-out example {i + 1}", e.prompt) for i, e in enumerate(task.eval_examples())]
        draws = [task.train_example(rng).prompt for _ in range(CONTEXT_SAMPLES)]
        located += [(f"a training example (draw {i + 1})", prompt) for i, prompt in enumerate(draws)]
    if not located:
        return
    lengths = [len(ids) for ids in tokenizer([prompt for _, prompt in located])["input_ids"]]
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    needed = lengths[longest] + task.gen_length
    if needed > context:
        over = sum(length + task.gen_length > context for length in lengths)
        raise ConfigError(
            f"the prompt of {located[longest][0]} has {lengths[longest]} tokens: with task.gen_length="
            f"{task.gen_length} it needs {needed} positions, more than the model's context of {context} "
            f"({over} of {len(lengths)} prompts do not fit); shorten or drop the long prompts, or lower "
            f"task.gen_length"
        )


def model_node(cfg: DictConfig) -> DictConfig:
    """`cfg.model` with `dtype: auto` made concrete for the trainer's device, so that what is
    built, saved and logged names the dtype the run really uses."""
    from dllm.models.base import DTYPES, resolve_dtype

    if cfg.model.get("dtype") != "auto":
        return cfg.model
    device = cfg.get("trainer", {}).get("device", "auto")
    dtype = resolve_dtype("auto", device)
    return OmegaConf.merge(cfg.model, {"dtype": next(name for name, d in DTYPES.items() if d == dtype)})
