"""A fixed train / held-out split by hashing a canonical key of each example.

The hash must not depend on the process (Python's `hash()` of a string is salted per run),
on the seed or on the order examples are drawn in, so a held-out example is never trained
on by any run.
"""

from __future__ import annotations

import hashlib


def heldout_bucket(key: str) -> int:
    """A bucket in 0..99 for `key`: the same in every process and on every machine."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def is_heldout(key: str, heldout_percent: int) -> bool:
    """True for about `heldout_percent` percent of keys, always the same ones."""
    return heldout_bucket(key) < heldout_percent
