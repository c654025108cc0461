"""Small sample files, a dozen records each, in the layouts `dllm.data.layouts` reads: examples
of each format and the data of the tests. Refer to them as `pkg://dllm.data.samples/NAME`."""
