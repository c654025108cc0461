"""LoRA adapter directories (peft's `save_pretrained` layout): `adapter_config.json` names the
base model the adapter was trained on. A target that is an adapter loads that base, applies the
adapter and merges it, so an adapter evaluates and decodes like any checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from dllm.errors import DllmError

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str:
    """The base model (a checkpoint directory or preset name) an adapter directory names."""
    config_file = Path(path) / ADAPTER_CONFIG
    try:
        base = json.loads(config_file.read_text()).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError) as exc:
        raise DllmError(
            f"cannot read {config_file} ({type(exc).__name__}); restore the adapter's config file"
        ) from None
    if not base:
        raise DllmError(
            f"{config_file} names no base model (base_model_name_or_path); set it to the base checkpoint "
            f"directory or preset the adapter was trained on"
        )
    # peft writes the path it was given; a relative one is read from the adapter's folder when it is there
    beside = Path(path) / base
    return str(beside) if not Path(base).is_absolute() and beside.exists() else str(base)
