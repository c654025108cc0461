"""Command-line entry points: dllm, dllm-train, dllm-eval, dllm-generate."""
