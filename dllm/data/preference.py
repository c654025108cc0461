"""`preference`: (prompt, chosen, rejected) pairs from local JSON Lines files, for preference
optimisation (`algorithm=vrpo`, `algorithm=dpo`).

Each line is one object with string fields `prompt`, `chosen` (the preferred response) and
`rejected`; any other field (e.g. `answer`) reaches rewards at evaluation as is. Lines are read
as written (the standard library's JSON, no type unified across lines). Unlike the `file` task,
which skips a malformed line with a warning, a preference file is refused at its first bad line:
a pair silently dropped or half-read would change what is preferred. The
held-out split is `eval_file`, or else a fixed `heldout_percent` of `train_file`'s pairs chosen
by a hash of their content. As examples (what SFT and evaluation read) a pair is its prompt with
the chosen response, so an SFT stage on this task is SFT on the chosen responses.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from dllm.data.base import TASKS, Example, Task
from dllm.data.file import RESERVED_FIELDS, check_sizes
from dllm.data.prompts import PromptFormatter
from dllm.data.readers import read_json_lines
from dllm.data.split import is_heldout
from dllm.errors import ConfigError

PAIR_FIELDS = ("prompt", "chosen", "rejected")
# The shipped pairs: the default job's addition, the correct sum chosen, a near miss rejected.
SAMPLE_PAIRS = "pkg://dllm.data.samples/addition_pairs.jsonl"
SAMPLE_HELD_OUT = "pkg://dllm.data.samples/addition_pairs_test.jsonl"


def _problem(value: Any, allow_empty: bool) -> str:
    """What is wrong with a pair field's value ("" when nothing is)."""
    if value is None:
        return "has no field"
    if not isinstance(value, str):
        return f"has a non-string ({type(value).__name__}) value in"
    return "" if value or allow_empty else "has an empty"


@dataclass(frozen=True)
class PreferencePair:
    """A formatted `prompt`, the `chosen` and `rejected` responses (no EOS), the reward `fields`."""

    prompt: str
    chosen: str
    rejected: str
    fields: dict[str, Any] = field(default_factory=dict)

    def example(self) -> Example:
        return Example(prompt=self.prompt, response=self.chosen, fields=dict(self.fields))


@TASKS.register("preference")
class PreferenceTask(Task):
    """Pairs from `train_file` (drawn uniformly with the trainer's rng) and a held-out split:
    every pair of `eval_file`, or the `heldout_percent` of `train_file`'s pairs whose content
    hashes below it; `num_eval` keeps the first ones (null: all). `system_prompt`,
    `prompt_suffix`, `chat_template` and `tokenizer` format prompts as the `file` task does."""

    def __init__(
        self,
        train_file: str | None = SAMPLE_PAIRS,
        eval_file: str | None = SAMPLE_HELD_OUT,
        gen_length: int = 8,
        num_eval: int | None = None,
        heldout_percent: int = 10,
        system_prompt: str | None = None,
        prompt_suffix: str = "",
        chat_template: bool = True,
        tokenizer: str | None = None,
    ) -> None:
        if train_file is None and eval_file is None:
            raise ConfigError("the preference task needs task.train_file, task.eval_file or both (local JSONL paths)")
        check_sizes(gen_length, num_eval, eval_file, heldout_percent)
        self.gen_length = gen_length
        self.format_prompt = PromptFormatter("{prompt}", system_prompt, prompt_suffix, chat_template, tokenizer)
        train = self._read(train_file, "task.train_file") if train_file is not None else []
        if eval_file is not None:
            self.train_pairs, held_out = train, self._read(eval_file, "task.eval_file")
        else:
            keys = [json.dumps([p.prompt, p.chosen, p.rejected]) for p in train]
            self.train_pairs = [p for p, key in zip(train, keys) if not is_heldout(key, heldout_percent)]
            held_out = [p for p, key in zip(train, keys) if is_heldout(key, heldout_percent)]
            if not self.train_pairs or not held_out:
                raise ConfigError(
                    f"{train_file}: {heldout_percent}% held out leaves {len(self.train_pairs)} training and "
                    f"{len(held_out)} evaluation pairs; set task.eval_file or change task.heldout_percent"
                )
        self.eval_pairs = held_out[:num_eval] if num_eval is not None else held_out

    def _read(self, path: str, option: str) -> list[PreferencePair]:
        records = read_json_lines(path, option)
        if records.bad_lines:
            raise ConfigError(
                f"{records.bad_lines[0]}: every line of a preference file must be one JSON object with "
                f"{', '.join(PAIR_FIELDS)}; fix or remove it"
            )
        if not records.rows:
            raise ConfigError(
                f"{option}={path!r} holds no pairs; point it at a JSON Lines file of prompt, chosen, rejected"
            )
        return [self._pair(record, records.where(index)) for index, record in enumerate(records.rows)]

    def _pair(self, record: dict[str, Any], where: str) -> PreferencePair:
        for name in PAIR_FIELDS:
            problem = _problem(record.get(name), allow_empty=name == "prompt")
            if problem:
                present = ", ".join(sorted(k for k, v in record.items() if v is not None)) or "none"
                raise ConfigError(
                    f"{where} {problem} {name!r} (its fields: {present}); each line needs the strings "
                    f"{', '.join(PAIR_FIELDS)}: add it, or rename that line's field to {name!r}"
                )
        if record["chosen"] == record["rejected"]:
            raise ConfigError(f"{where}: chosen and rejected are the same text; a pair must prefer one of two answers")
        # What rewards receive at evaluation; never the names a reward call uses for its own arguments.
        fields = {name: value for name, value in record.items() if name not in (*PAIR_FIELDS, *RESERVED_FIELDS)}
        prompt = self.format_prompt({"prompt": record["prompt"]})
        return PreferencePair(prompt, record["chosen"], record["rejected"], fields)

    def sample_pairs(self, rng: random.Random, n: int) -> list[PreferencePair]:
        """`n` training pairs drawn uniformly with `rng` (the trainer owns and checkpoints it)."""
        if not self.train_pairs:
            raise ConfigError(
                "this preference task has no training pairs (only task.eval_file is set); set task.train_file to train"
            )
        return [self.train_pairs[rng.randrange(len(self.train_pairs))] for _ in range(n)]

    def train_example(self, rng: random.Random) -> Example:
        return self.sample_pairs(rng, 1)[0].example()

    def eval_examples(self) -> list[Example]:
        return [pair.example() for pair in self.eval_pairs]
