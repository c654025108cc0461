"""The math-verify worker: `dllm.rewards.math` runs this file in a child process.

It is run by path (not imported as part of `dllm`), so the child imports math-verify and
sympy alone, in well under a second, and never torch. Protocol, one JSON object per line:
the worker first writes `{"ready": true}` (or `{"error": "..."}` when math-verify cannot be
imported); then for each request `{"gold": str, "pred": str, "timeout": float}` (LaTeX
without delimiters) it writes `{"ok": bool}`, with `"timeout": true` when the verification
ran past `timeout` seconds. Only the protocol goes to stdout.

The deadline is a SIGALRM timer in this process's main thread, raising an exception that
math-verify's `except Exception` clauses cannot swallow. Work that never returns to the
interpreter (a huge integer power in C) is the parent's to stop: it kills this process.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from functools import lru_cache


class Deadline(BaseException):
    """The verification ran out of time (a BaseException, so that no library catches it)."""


def _on_alarm(signum, frame):
    raise Deadline


def main() -> None:
    logging.disable(logging.CRITICAL)  # math-verify logs its own timeouts; stdout is the protocol
    out = sys.stdout
    try:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    except Exception as exc:
        out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        return
    targets = (LatexExtractionConfig(), ExprExtractionConfig())

    def parse_math(text: str):
        return parse(f"${text}$", targets, parsing_timeout=None)

    parse_gold = lru_cache(maxsize=4096)(parse_math)  # a group of completions shares one answer

    timer = hasattr(signal, "setitimer")
    if timer:
        signal.signal(signal.SIGALRM, _on_alarm)
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, float(request["timeout"]))
            try:
                gold, pred = parse_gold(request["gold"]), parse_math(request["pred"])
                reply = {"ok": bool(gold) and bool(pred) and bool(verify(gold, pred, timeout_seconds=None))}
            finally:
                if timer:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except Deadline:
            reply = {"ok": False, "timeout": True}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
