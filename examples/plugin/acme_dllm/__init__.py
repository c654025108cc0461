"""An example dllm plugin (see README.md)."""
