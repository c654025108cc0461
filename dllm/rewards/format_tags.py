"""`format_tags`: does the completion follow a tagged layout, such as d1's
`<reasoning>...</reasoning><answer>...</answer>` or R1's `<think>...</think>`?

A tag is well formed when `<tag>` and `</tag>` each occur exactly once, in that order. The
layout holds when every tag in `tags` is well formed and the blocks come in the listed
order without overlapping; with `strict`, nothing but whitespace may surround or separate
the blocks (so `tags=[think]` with `strict=false` allows the final answer after
`</think>`). Score: 1.0 when the layout holds; otherwise 0.0, or with `partial`
`k / (len(tags) + 1)` for k well-formed tags (the order earns the last share).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from dllm.errors import ConfigError
from dllm.rewards.base import REWARDS, Reward

_TAG_NAME = re.compile(r"[A-Za-z_][\w.-]*")


@REWARDS.register("format_tags")
class FormatTags(Reward):
    def __init__(
        self, tags: Sequence[str] = ("reasoning", "answer"), strict: bool = False, partial: bool = False
    ) -> None:
        tags = list(tags)
        if not tags:
            raise ConfigError(
                "reward.tags is empty: list the tags the completion must contain, e.g. [reasoning, answer]"
            )
        for tag in tags:
            if not isinstance(tag, str) or not _TAG_NAME.fullmatch(tag):
                raise ConfigError(f"reward.tags: {tag!r} is not a tag name; write names without brackets, e.g. think")
        if len(set(tags)) != len(tags):
            raise ConfigError(f"reward.tags={tags} names a tag twice; list each tag once")
        self.tags, self.strict, self.partial = tags, strict, partial

    def score(self, completion: str) -> float:
        """The score of one completion (see the module docstring)."""
        spans = []  # (start of <tag>, end of </tag>) of each well-formed tag, None otherwise
        for tag in self.tags:
            opening, closing = f"<{tag}>", f"</{tag}>"
            start, end = completion.find(opening), completion.find(closing)
            once = completion.count(opening) == 1 and completion.count(closing) == 1
            spans.append((start, end + len(closing)) if once and start < end else None)
        formed = sum(span is not None for span in spans)
        if formed == len(spans) and self._laid_out(completion, spans):
            return 1.0
        return formed / (len(self.tags) + 1) if self.partial else 0.0

    def _laid_out(self, completion: str, spans: list[tuple[int, int]]) -> bool:
        previous_end = 0
        for start, end in spans:
            if start < previous_end:
                return False
            if self.strict and completion[previous_end:start].strip():
                return False
            previous_end = end
        return not (self.strict and completion[previous_end:].strip())

    def __call__(self, prompts: list[str], completions: list[str], **fields: Any) -> list[float]:
        return [self.score(completion) for completion in completions]
