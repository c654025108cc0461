"""lm-eval tasks shipped with dllm (the folder `dllm-lm-eval` and `dllm-eval --tasks` add to
lm-eval's task search path): tiny tasks over local files, so lm-eval runs offline."""
