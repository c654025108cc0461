"""Prompts and completions as text: the EOS cut, decoding token ids to the text users and
rewards see, the chat template around a prompt, and the final answer in a `\\boxed{...}`. One
place, used by rewards, data, evaluation, rollouts and `dllm-generate`, so every reader cuts
and decodes a completion the same way.

The EOS cut: a completion ends at its first EOS (excluded); one without an EOS in its
`gen_length` tokens is truncated. A tokenizer without an EOS token cuts nothing and marks
nothing truncated.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_UNBRACED = re.compile(r"[^\s$]+")


def completion_lengths(completions: Tensor, eos_id: int | None) -> Tensor:
    """[N] tokens of each completion [N, G] before its first EOS (G where it has none)."""
    length = completions.shape[1]
    if eos_id is None:
        return torch.full((completions.shape[0],), length, dtype=torch.long, device=completions.device)
    is_eos = completions == eos_id
    return torch.where(is_eos.any(1), is_eos.long().argmax(1), length)


def truncated(completions: Tensor, eos_id: int | None) -> Tensor:
    """[N] bool: no EOS within the completion's G tokens (never, without an EOS token)."""
    if eos_id is None:
        return torch.zeros(completions.shape[0], dtype=torch.bool, device=completions.device)
    return completion_lengths(completions, eos_id) == completions.shape[1]


def through_eos(completions: Tensor, eos_id: int | None) -> Tensor:
    """[N, G] bool: every position up to and including the first EOS (all, without an EOS)."""
    positions = torch.arange(completions.shape[1], device=completions.device)
    return positions[None, :] <= completion_lengths(completions, eos_id)[:, None]


def cut_rows(completions: Tensor, eos_id: int | None) -> list[list[int]]:
    """Each completion's token ids before its first EOS."""
    lengths = completion_lengths(completions, eos_id).tolist()
    return [row[:length] for row, length in zip(completions.tolist(), lengths)]


def decode_completions(tokenizer, completions: Tensor) -> tuple[list[str], list[int]]:
    """Texts (cut at the first EOS, special tokens dropped) and their token lengths."""
    rows = cut_rows(completions, tokenizer.eos_token_id)
    return [tokenizer.decode(row, skip_special_tokens=True) for row in rows], [len(row) for row in rows]


def token_offsets(tokenizer, completions: Tensor) -> list[list[int]]:
    """Per completion, the character offset in its decoded text (as rewards see it, cut at the
    first EOS) at which each of its tokens starts: what a step-level reward needs to turn
    the characters it judges into token positions."""
    offsets = []
    for row in cut_rows(completions, tokenizer.eos_token_id):
        starts, length = [], 0
        for token in row:
            starts.append(length)
            length += len(tokenizer.decode([token], skip_special_tokens=True))
        offsets.append(starts)
    return offsets


def chat_prompt(tokenizer, text: str, system_prompt: str | None = None) -> str:
    """`text` as the user message (after `system_prompt` as a system message) of `tokenizer`'s
    chat template, ready for the assistant's reply (`add_generation_prompt`)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": text})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def matching_brace(text: str, start: int) -> int:
    """Index of the `}` closing the `{` at `text[start]`, or -1 when it is never closed.
    A backslash escapes the next character, so `\\{` and `\\}` do not count."""
    depth = 0
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def last_boxed(text: str) -> str | None:
    """The content of the last top-level `\\boxed{...}` / `\\fbox{...}` / `\\boxed X` in
    `text`, or None when there is none or the last one is never closed. Boxes inside a box
    belong to it: `\\boxed{\\boxed{1}+1}` gives `\\boxed{1}+1`."""
    answer: str | None = None
    position = 0
    while match := BOX.search(text, position):
        i = match.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "{":
            end = matching_brace(text, i)
            if end < 0:
                return None  # the last box runs to the end unclosed: there is no answer
            answer, position = text[i + 1 : end], end + 1
            continue
        token = _UNBRACED.match(text, i)
        position = match.end() if token is None else token.end()
        content = "" if token is None else token.group(0).rstrip(".,;:")
        if content:
            answer = content
    return answer


def strip_delimiters(text: str) -> str:
    """`text` without surrounding whitespace and `$` signs."""
    return text.strip().strip("$").strip()
