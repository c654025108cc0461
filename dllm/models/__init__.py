"""Diffusion LM architectures behind one contract (see `base.py`)."""

from dllm.models import llada  # noqa: F401  (registers the family and its presets)
from dllm.models.base import MODELS, ModelPreset, load_model

__all__ = ["MODELS", "ModelPreset", "load_model"]
