"""Diffusion LM architectures behind one contract (see `base.py`)."""

from dllm.models import dream, llada, sdar  # noqa: F401  (register the families and their presets)
from dllm.models.base import MODELS, ModelPreset, load_model

__all__ = ["MODELS", "ModelPreset", "load_model"]
