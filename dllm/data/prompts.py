"""Prompt templates: `{name}` placeholders filled from a record, then the tokenizer's chat
template when it has one.

A template is plain text in which `{name}` (a Python identifier in braces) is replaced by the
record's value of `name`; `{{` and `}}` write literal braces, and braces around anything that
is not an identifier stay as they are (`\\boxed{}` needs no escaping). A placeholder that
names no field is an error listing the fields there are.

`${dllm.run_tokenizer:}` in a config is the tokenizer a run uses — the top-level `tokenizer`,
else `model.pretrained`, else null (the character tokenizer, which has no chat template) —
so that a file task wraps its prompts in the chat template of the model it trains.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dllm.errors import ConfigError, did_you_mean
from dllm.text import chat_prompt

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(template: str) -> list[str]:
    """The field names `template` refers to, in order of first use."""
    names = [match.group(1) for match in _PLACEHOLDER.finditer(template) if match.group(1)]
    return list(dict.fromkeys(names))


def as_text(value: Any) -> str:
    """How a field value reads inside a prompt: text as is, None as nothing, lists as `[3, 5, 7]`."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def render(template: str, values: Mapping[str, Any], option: str = "task.prompt_template") -> str:
    """`template` with each `{name}` replaced by `as_text(values[name])`."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name not in values:
            raise ConfigError(
                f"{option} uses {{{name}}}{did_you_mean(name, values)} but the records have no such field "
                f"(fields: {', '.join(sorted(values))}); write {{{{{name}}}}} for literal braces"
            )
        return as_text(values[name])

    return _PLACEHOLDER.sub(substitute, template)


class PromptFormatter:
    """Turns a record's values into the prompt text a sampler receives.

    `template` is rendered with the values; `system_prompt` (optional) goes first. With
    `chat_template` and a `tokenizer` (a checkpoint directory) whose tokenizer has a chat
    template, the text becomes the user message (the system prompt a system message) of
    `apply_chat_template(..., add_generation_prompt=True)`; otherwise the system prompt and
    the text are joined by a blank line. `prompt_suffix` is appended last either way (e.g.
    `<reasoning>` to open the response, as d1 does).
    """

    def __init__(
        self,
        template: str,
        system_prompt: str | None = None,
        prompt_suffix: str = "",
        chat_template: bool = True,
        tokenizer: str | None = None,
    ) -> None:
        self.template = template
        self.system_prompt = system_prompt
        self.prompt_suffix = prompt_suffix
        self.chat_template = chat_template
        self.tokenizer_path = tokenizer
        self._tokenizer: Any = None
        self._loaded = False

    @property
    def chat_tokenizer(self) -> Any:
        """The tokenizer whose chat template wraps prompts, or None (no template, or disabled)."""
        if not self._loaded:
            self._loaded = True
            if self.chat_template and self.tokenizer_path:
                from dllm.tokenizer import load_tokenizer

                tokenizer = load_tokenizer(self.tokenizer_path)
                self._tokenizer = tokenizer if getattr(tokenizer, "chat_template", None) else None
        return self._tokenizer

    def __call__(self, values: Mapping[str, Any]) -> str:
        text = render(self.template, values)
        tokenizer = self.chat_tokenizer
        if tokenizer is not None:
            text = chat_prompt(tokenizer, text, self.system_prompt)
        elif self.system_prompt:
            text = f"{self.system_prompt}\n\n{text}"
        return text + self.prompt_suffix


def run_tokenizer(*, _root_: DictConfig) -> str | None:
    """The tokenizer of the run config `_root_`: `tokenizer`, else `model.pretrained`, else
    None (the character tokenizer); None outside a run config (a node built on its own)."""
    if "model" not in _root_ or "task" not in _root_:
        return None
    name = _root_.get("tokenizer") or OmegaConf.select(_root_, "model.pretrained", default=None)
    return None if name in (None, "char") else str(name)


if not OmegaConf.has_resolver("dllm.run_tokenizer"):
    OmegaConf.register_new_resolver("dllm.run_tokenizer", run_tokenizer)
