"""The model contract, the model registry, and `load_model`.

Every model is a `torch.nn.Module` with `mask_token_id`, `block_size` (None = full
attention), `shift_logits`, and `forward(input_ids, attention_mask=None, position_ids=None,
past_key_values=None, use_cache=False)` returning an object with `.logits`.
"""

from __future__ import annotations

import functools
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

from dllm.adapters import adapter_base, is_adapter
from dllm.errors import ConfigError, DllmError, did_you_mean
from dllm.models.chosen import LinearHead, chosen_log_probs, hooked
from dllm.registry import Registry

MODELS = Registry("model")


@dataclass
class DiffusionLMOutput:
    """`logits` [B, L, V]; `past_key_values`, the `KVCache` read (and possibly extended), or None;
    `log_probs` [B, K] float32 in place of the logits when the forward was given `targets`."""

    logits: Tensor | None = None
    past_key_values: Any = None
    log_probs: Tensor | None = None


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def denoiser_logits(
    model: torch.nn.Module, x: Tensor, attention_mask: Tensor | None, position_ids: Tensor | None = None
) -> Tensor:
    """Logits in which position i predicts token i, for shifted (Dream-style) models too."""
    logits = model(x, attention_mask=attention_mask, position_ids=position_ids).logits
    return align_shifted(logits) if getattr(model, "shift_logits", False) else logits


def align_shifted(logits: Tensor, start: int = 0) -> Tensor:
    """[B, L - start, V] a shifted model's logits [B, L, V] (position i - 1 predicts token i)
    realigned so that row j predicts token `start + j`; token 0, with no position before it,
    reads position 0 (as Dream's decoder). From `start` > 0 a view, no copy."""
    if start > 0:
        return logits[:, start - 1 : -1]
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def logit_shift(model: torch.nn.Module) -> int:
    """1 for a shifted-logits model (position i - 1 predicts token i), else 0."""
    return int(bool(getattr(model, "shift_logits", False)))


@functools.cache
def _takes_logits_slice(model_class: type) -> bool:
    return "logits_slice" in inspect.signature(model_class.forward).parameters


def run_model(model: torch.nn.Module, read: slice | Tensor | None, input_ids: Tensor, **kwargs) -> Tensor:
    """The logits of one forward at the positions `read` (see `logits_slice` in the model
    contract); a model whose forward does not take `logits_slice` computes them all, then cut."""
    if _takes_logits_slice(type(model)):
        return model(input_ids, logits_slice=read, **kwargs).logits
    logits = model(input_ids, **kwargs).logits
    if read is None or isinstance(read, slice):
        return logits if read is None else logits[:, read]
    return logits.gather(1, read[..., None].expand(-1, -1, logits.shape[-1]))


def logits_from(model: torch.nn.Module, input_ids: Tensor, start: int, **kwargs: Any) -> Tensor:
    """[B, L - start, V] the logits predicting tokens `start`..L-1 of `input_ids` [B, L] (a shifted
    model's realigned as `align_shifted` does), the head run at those positions only."""
    if not logit_shift(model):
        return run_model(model, slice(start, None), input_ids, **kwargs)
    if start > 0:
        return run_model(model, slice(start - 1, input_ids.shape[1] - 1), input_ids, **kwargs)
    return align_shifted(run_model(model, None, input_ids, **kwargs))


@dataclass
class ValueOutput:
    """`values` [B, L] float32, one per position; `past_key_values` as in `DiffusionLMOutput`."""

    values: Tensor
    past_key_values: Any = None


class DiffusionLMMixin:
    """The dllm model contract over a backbone `self.model(input_ids, attention_mask,
    position_ids, cache, commit, replace_position) -> hidden` (final norm applied)."""

    block_size: int | None = None
    shift_logits = False
    # forward reads a [B, K] `logits_slice` and `targets` (their log-probs, `dllm.models.chosen`):
    # `dllm.algorithms.denoise` then runs the head at the scored positions only
    reads_targets = True

    @property
    def mask_token_id(self) -> int:
        return self.config.mask_token_id

    def output_logits(self, hidden: Tensor) -> Tensor:
        raise NotImplementedError

    def linear_head(self) -> LinearHead | None:
        """`output_logits` as tensors, when it is a plain linear map (then a fused kernel may score
        targets on a GPU, `dllm.models.chosen`); None, the default, always runs `output_logits`."""
        return None

    def head_output(self, hidden: Tensor, cache: Any) -> DiffusionLMOutput:
        return DiffusionLMOutput(logits=self.output_logits(hidden), past_key_values=cache)

    def run_backbone(
        self, input_ids, attention_mask, position_ids, past_key_values, use_cache, replace_position, block_size=None
    ):
        from dllm.models.cache import start_cache

        cache = start_cache(past_key_values, use_cache, self.config.num_hidden_layers)
        hidden = self.model(input_ids, attention_mask, position_ids, cache, use_cache, replace_position, block_size)
        return hidden, cache

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
        replace_position: int | None = None,
        block_size: int | None = None,
        logits_slice: slice | Tensor | None = None,
        targets: Tensor | None = None,
        **kwargs: Any,
    ) -> DiffusionLMOutput | ValueOutput:
        """Logits [B, L, V] as the architecture computes them (see `shift_logits`).

        `attention_mask`: [B, L_keys] 0/1 padding (keys only), or a [B|1, 1, Lq, Lk] bool mask
        used as given (e.g. the `[x_t ; x_0]` training mask). Without one, a block diffusion
        model applies its block-causal mask, over blocks of `block_size` when given (decoding
        with another block size than the checkpoint's), else of its own. Caching: see
        `dllm.models.cache`. `logits_slice`: the positions given logits (values), `[:, logits_slice]`
        of the full output (None: all), or per row, a [B, K] tensor of positions (`[b, K]` ->
        logits [B, K, V]); a decoder reads only its block, and a forward that only fills the cache
        reads none (`slice(0, 0)`): the head, over a large vocabulary, is skipped. `targets`: token
        ids shaped as the read positions ([B, K] with a tensor `logits_slice`): the output holds
        only their log-probs (`log_probs`, `dllm.models.chosen`), never the whole logits."""
        hidden, cache = self.run_backbone(
            input_ids, attention_mask, position_ids, past_key_values, use_cache, replace_position, block_size
        )
        if isinstance(logits_slice, Tensor):
            hidden = hidden.gather(1, logits_slice[..., None].expand(-1, -1, hidden.shape[-1]))
        elif logits_slice is not None:
            hidden = hidden[:, logits_slice]
        if targets is not None:
            if getattr(self, "is_value_model", False):
                raise DllmError("a value model has no token log-probs: call it without targets")
            log_probs = chosen_log_probs(
                self.output_logits, hidden, targets, self.config.vocab_size, linear=self.linear_head(),
                collective_head=hooked(self),  # ZeRO-3 hooks every module, this one too
            )  # fmt: skip
            return DiffusionLMOutput(log_probs=log_probs, past_key_values=cache)
        return self.head_output(hidden, cache)


class ValueModelMixin(DiffusionLMMixin):
    """The same backbone with a scalar head (zero-initialised) instead of the LM head: values
    at every position. Saved and loaded as its own checkpoint (its own `architectures`)."""

    is_value_model = True

    def add_value_head(self, hidden_size: int) -> None:
        self.value_head = torch.nn.Linear(hidden_size, 1)
        self.value_head.is_value_head = True

    def head_output(self, hidden: Tensor, cache: Any) -> ValueOutput:
        return ValueOutput(values=self.value_head(hidden).squeeze(-1).float(), past_key_values=cache)


def init_weights(module: torch.nn.Module, std: float) -> None:
    """Every family's initialisation: normal(0, std) linear and embedding weights, zero biases,
    unit norms, and a zero value head (so a fresh value model predicts 0 everywhere)."""
    from dllm.models.layers import RMSNorm

    if getattr(module, "is_value_head", False):
        torch.nn.init.zeros_(module.weight)
        torch.nn.init.zeros_(module.bias)
    elif isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
        torch.nn.init.normal_(module.weight, mean=0.0, std=std)
        if getattr(module, "bias", None) is not None:
            torch.nn.init.zeros_(module.bias)
    elif isinstance(module, RMSNorm):
        torch.nn.init.ones_(module.weight)


def pad_token_id(model: torch.nn.Module) -> int:
    """The id to pad with: the config's pad token, else its EOS (as SDAR's checkpoints need)."""
    config = model.config
    pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    return pad[0] if isinstance(pad, list) else int(pad)


def context_length(model: torch.nn.Module) -> int | None:
    """The positions the model was built for (`max_position_embeddings`; LLaDA-style configs
    name it `max_sequence_length`), or None when its config names none."""
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None) or getattr(config, "max_sequence_length", None)


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device | None = None) -> torch.dtype | None:
    """The torch dtype `dtype` names. "auto" (the pretrained presets' default): bfloat16 on a
    GPU that supports it, else float32 — never bf16 on a CPU unless asked by name. `device`:
    where the model will run ("auto" or None: a GPU when there is one)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        kind = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device in (None, "auto") else device
        on_gpu = torch.device(kind).type == "cuda"
        return (
            torch.bfloat16 if on_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
        )
    if dtype not in DTYPES:
        known = [*DTYPES, "auto"]
        raise ConfigError(f"unknown dtype {dtype!r}{did_you_mean(dtype, known)} known: {', '.join(known)}")
    return DTYPES[dtype]


def config_fields(config_class: type[PretrainedConfig]) -> set[str]:
    """The keyword arguments a config class's constructors (its own and its bases') name."""
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    fields: set[str] = set()
    for klass in config_class.__mro__:
        if klass is PretrainedConfig or not issubclass(klass, PretrainedConfig):
            break
        if "__init__" in vars(klass):
            parameters = inspect.signature(klass.__init__).parameters.values()
            fields |= {p.name for p in parameters if p.kind in named}
    return fields - {"self"}


class ModelPreset:
    """A registered way to build a model: a config class, a model class and preset values.

    `preset(**overrides)` builds a freshly initialised model; `pretrained=PATH` loads a
    checkpoint instead. Unknown override keys are refused, naming the known ones.
    """

    def __init__(
        self, config_class: type[PretrainedConfig], model_class: type[PreTrainedModel], **defaults: Any
    ) -> None:
        self.config_class = config_class
        self.model_class = model_class
        self.defaults = defaults

    def check_config(self, overrides: dict[str, Any]) -> None:
        """Refuse keys the config class does not define (before any model is built)."""
        known = config_fields(self.config_class) | {"pretrained", "dtype"}
        for key in overrides:
            if key not in known:
                raise ConfigError(
                    f"unknown model option {key!r}{did_you_mean(key, known)} "
                    f"({self.config_class.model_type} options: {', '.join(sorted(known))})"
                )

    def config(self, pretrained: str | None = None, dtype: str | None = None, **overrides: Any) -> PretrainedConfig:
        """The config the model would be built with (cheap: no weights are read or made)."""
        self.check_config(overrides)
        if pretrained is not None:
            return pretrained_config(pretrained, **overrides)
        return self.config_class(**{**self.defaults, **overrides})

    def __call__(self, pretrained: str | None = None, dtype: str | None = None, **overrides: Any) -> PreTrainedModel:
        self.check_config(overrides)
        if pretrained is not None:
            return load_pretrained(pretrained, dtype=dtype, **overrides)
        model = self.model_class(self.config(**overrides))
        torch_dtype = resolve_dtype(dtype)
        return model.to(torch_dtype) if torch_dtype is not None else model


def pretrained_config(path: str | Path, **overrides: Any) -> PretrainedConfig:
    """The config of a checkpoint directory; refuses directories dllm cannot load, naming why."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        hint = " (it does not exist)" if not path.exists() else " (it has no config.json)"
        raise DllmError(
            f"checkpoint directory {str(path)!r} is not a model checkpoint{hint}; give a directory "
            f"written by save_pretrained / dllm-train (its checkpoint/ folder), or a preset: "
            f"{', '.join(MODELS.names())}"
        )
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type not in _MODEL_CLASSES:
        raise DllmError(
            f"{str(config_file)!r} declares model_type {model_type!r}; dllm implements: "
            f"{', '.join(sorted(_MODEL_CLASSES))}"
        )
    return AutoConfig.from_pretrained(path, **overrides)


def checkpoint_weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every tensor in a checkpoint's safetensors files (headers only), after
    checking that every shard its index names is there."""
    from safetensors import safe_open

    index_file = path / "model.safetensors.index.json"
    if index_file.is_file():
        shards = sorted(set(json.loads(index_file.read_text())["weight_map"].values()))
        missing = [shard for shard in shards if not (path / shard).is_file()]
        if missing:
            raise DllmError(
                f"{str(index_file)!r} names {len(shards)} weight shards but {len(missing)} are missing: "
                f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}; download the whole checkpoint"
            )
    elif (path / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        return {}  # other formats (.bin) are left to transformers
    shapes: dict[str, tuple[int, ...]] = {}
    for shard in shards:
        with safe_open(path / shard, framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118  (a safetensors handle is not iterable)
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def check_weights_fit(path: Path, model_class: type[PreTrainedModel], config: PretrainedConfig) -> None:
    """Refuse a checkpoint whose tensors do not have the shapes its config.json implies."""
    stored = checkpoint_weight_shapes(path)
    if not stored:
        return
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in model_class(config).state_dict().items()}
    for key, shape in stored.items():
        if key in expected and expected[key] != shape:
            raise DllmError(
                f"checkpoint {str(path)!r}: tensor {key!r} has shape {list(shape)} but config.json implies "
                f"{list(expected[key])}; the weights and config.json come from different models"
            )


def load_pretrained(
    path: str | Path, dtype: str | None = None, value_model: bool = False, **overrides: Any
) -> PreTrainedModel:
    """A `dllm` model from a checkpoint directory (its `model_type` picks the family); the
    family's value model when the checkpoint is one, or when `value_model` asks for it."""
    config = pretrained_config(path, **overrides)
    architectures = config.architectures or []
    family = _MODEL_CLASSES[config.model_type]
    value_model = value_model or any(a.endswith("ValueModel") for a in architectures)
    model_class = family.value_class if value_model else family
    check_weights_fit(Path(path), model_class, config)
    kwargs = {"dtype": resolve_dtype(dtype)} if dtype is not None else {}
    return model_class.from_pretrained(path, config=config, **kwargs)


_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {}


def register_family(
    config_class: type[PretrainedConfig], model_class: type[PreTrainedModel], value_class: type[PreTrainedModel]
) -> None:
    """Make `model_type` load through transformers' Auto classes with dllm's implementation."""
    from transformers import AutoModel, AutoModelForCausalLM

    model_class.value_class = value_class
    _MODEL_CLASSES[config_class.model_type] = model_class
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    AutoModelForCausalLM.register(config_class, model_class, exist_ok=True)


def load_value_model(path_or_preset: str | Path, **overrides: Any) -> PreTrainedModel:
    """A value model: from a value checkpoint as saved, or from a policy checkpoint or preset
    (its backbone, with a fresh zero value head)."""
    name = str(path_or_preset)
    if Path(name).exists():
        return load_pretrained(name, value_model=True, **overrides)
    preset = MODELS.get(name)
    return preset.model_class.value_class(preset.config(**overrides))


def load_model(path_or_preset: str | Path, **overrides: Any) -> PreTrainedModel:
    """A model from a checkpoint directory, a registered preset name (`llada_tiny`, ...), or a LoRA
    adapter directory (its base model with the adapter merged in)."""
    name = str(path_or_preset)
    if is_adapter(name):
        return load_adapter(name, **overrides)
    if Path(name).exists():
        return load_pretrained(name, **overrides)
    if name in MODELS:
        return MODELS.build(name, **overrides)
    if "/" in name or name.startswith("."):
        return load_pretrained(name, **overrides)  # a path that does not exist: say so
    known = MODELS.names()
    raise DllmError(
        f"unknown model {name!r}{did_you_mean(name, known)}: not a directory and not a preset "
        f"(presets: {', '.join(known)})"
    )


def load_adapter(path: str | Path, **overrides: Any) -> PreTrainedModel:
    """The base model a LoRA adapter directory names, with the adapter applied and merged (the
    merged model is an ordinary dllm model: every sampler and estimator reads it unchanged)."""
    from peft import PeftModel

    base = load_model(adapter_base(path), **overrides)
    try:
        return PeftModel.from_pretrained(base, str(path)).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        why = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DllmError(
            f"cannot apply the LoRA adapter in {path} to its base {adapter_base(path)!r} ({type(exc).__name__}: "
            f"{why}); check that base_model_name_or_path names the model it was trained on"
        ) from None
