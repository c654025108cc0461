"""Decoders: block schedule x tokens-per-step x unmasking policy x cache strategy."""

from dllm.samplers import diffusion, dream, fast_dllm, llada, sdar  # noqa: F401  (register the built-in samplers)
from dllm.samplers.base import SAMPLERS, GenerationOutput, Sampler

__all__ = ["SAMPLERS", "GenerationOutput", "Sampler"]
