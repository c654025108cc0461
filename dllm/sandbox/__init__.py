"""The code sandbox: run untrusted Python programs in isolated processes, and judge their tests
without letting the program decide its own score.

Two sides of one trust boundary:
- inside (run by path with `python -I`, stdlib only): `worker.py` (one process per slot: forks
  and isolates a child per program), `harness.py` (runs the program, then its probes or its
  test, in that child), `isolation.py` (the kernel calls: namespaces, new root, cgroups);
- outside, in the trusted process: `pool.py` (`Sandbox`, `Job`, `Limits`, `Result`: the worker
  pool), `checks.py` (split a function test into probes the sandbox computes and checks judged
  here), with `walker.py` and `trusted_eval.py` (the small interpreter of the test's Python).

The `code` reward (dllm/rewards/code.py) is one user; the sandbox works on its own.
See docs/code_sandbox.md.
"""

from dllm.sandbox.pool import Job, Limits, Result, Sandbox, SandboxError, usable_cpus

__all__ = ["Job", "Limits", "Result", "Sandbox", "SandboxError", "usable_cpus"]
