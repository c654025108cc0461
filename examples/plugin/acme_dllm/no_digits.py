"""`acme_no_digits`: a plain function reward, 1.0 for a completion without a digit, else 0.0."""

from __future__ import annotations

from typing import Any


def no_digits(prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
    return [0.0 if any(ch.isdigit() for ch in c) else 1.0 for c in completions]
