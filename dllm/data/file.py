"""`file`: a task read from local JSON Lines, JSON, parquet or CSV files.

Records become examples through a layout (`dllm.data.layouts`: TraceRL's math and code
files, d1's GSM8K / MATH / countdown / sudoku files, or `plain`), with `fields` to read a
role from another field. Prompts come from `prompt_template` (`{name}` placeholders) and,
when the tokenizer has one, its chat template. The held-out split is `eval_file`, or else a
fixed `heldout_percent` of `train_file`'s records chosen by a hash of their content, so no
run ever trains on an evaluation record.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from dllm.data.base import TASKS, Example, Task
from dllm.data.layouts import LAYOUT_NAMES, LAYOUTS, Layout, MissingRole, detect_layout
from dllm.data.prompts import PromptFormatter, render
from dllm.data.readers import FILE_FORMATS, Records, read_records
from dllm.data.split import is_heldout
from dllm.errors import ConfigError, did_you_mean

logger = logging.getLogger(__name__)

# Names a reward call already uses for its own arguments: never passed through as fields.
RESERVED_FIELDS = frozenset({"prompts", "completions", "truncated"})
# Characters a record's text value may hold: far above any model's context, far below what makes
# a tokenizer abort the process (a line of hundreds of MB).
MAX_FIELD_CHARS = 1_000_000
ANSWER = "answer"


def check_sizes(gen_length: int, num_eval: int | None, eval_file: str | None, heldout_percent: float) -> None:
    """Refuse a file task's sizes that cannot work (shared by the tasks read from local files)."""
    if gen_length < 1:
        raise ConfigError(f"task.gen_length must be positive, got {gen_length}")
    if num_eval is not None and num_eval < 1:
        raise ConfigError(f"task.num_eval must be positive or null (all), got {num_eval}")
    if eval_file is None and not 0 < heldout_percent < 100:
        raise ConfigError(
            f"task.heldout_percent must be in 1..99 when there is no task.eval_file, got {heldout_percent}"
        )


class SkippedRecord(Exception):
    """A record without a gold answer: reported and skipped like a malformed line."""


def _absent(value: Any) -> bool:
    """None, or a float NaN (how parquet and CSV readers spell a missing value)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _longest_text(value: Any) -> int:
    """The length of the longest string in `value` (strings inside lists and mappings too)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return max((_longest_text(item) for item in value), default=0)
    return 0


@dataclass(frozen=True)
class Row:
    """One converted record: what its prompt is rendered from, its response and reward fields."""

    values: dict[str, Any]
    response: str
    fields: dict[str, Any]
    key: str  # what the held-out hash reads
    where: str = ""  # FILE:LINE (or FILE: record N) it was read from


@TASKS.register("file")
class FileTask(Task):
    """Examples from `train_file` (drawn uniformly with the trainer's rng) and a held-out
    split: every record of `eval_file`, or the `heldout_percent` of `train_file`'s records
    whose content hashes below it; `num_eval` keeps the first ones (null: all).

    `layout`: `auto` (from the first record's fields) or one of `dllm.data.layouts.LAYOUTS`.
    `fields`: role -> record field (`{answer: final_answer}`), null values keep the layout's
    default; `extra_fields`: reward field -> record field, passed to rewards as is.
    `prompt_template` (null: the layout's), `system_prompt`, `prompt_suffix`,
    `chat_template` and `tokenizer`: see `dllm.data.prompts.PromptFormatter`. A file that is
    not `.jsonl` / `.json` / `.parquet` / `.csv` needs `file_format`.
    """

    def __init__(
        self,
        train_file: str | None = None,
        eval_file: str | None = None,
        layout: str = "auto",
        fields: dict[str, str | None] | None = None,
        extra_fields: dict[str, str] | None = None,
        prompt_template: str | None = None,
        system_prompt: str | None = None,
        prompt_suffix: str = "",
        chat_template: bool = True,
        tokenizer: str | None = None,
        gen_length: int = 256,
        num_eval: int | None = None,
        heldout_percent: int = 10,
        file_format: str = "auto",
    ) -> None:
        if train_file is None and eval_file is None:
            raise ConfigError("the file task needs task.train_file, task.eval_file or both (local paths)")
        if layout not in LAYOUT_NAMES:
            raise ConfigError(
                f"task.layout={layout!r}{did_you_mean(layout, LAYOUT_NAMES)} known: {', '.join(LAYOUT_NAMES)}"
            )
        if file_format not in ("auto", *FILE_FORMATS):
            raise ConfigError(f"task.file_format={file_format!r}: expected auto or one of {', '.join(FILE_FORMATS)}")
        check_sizes(gen_length, num_eval, eval_file, heldout_percent)
        self.train_file, self.eval_file = train_file, eval_file
        self.file_format = file_format
        self.mapped = {role: str(name) for role, name in dict(fields or {}).items() if name is not None}
        self.extra_fields = {str(k): str(v) for k, v in dict(extra_fields or {}).items()}
        self.gen_length = gen_length
        self.num_eval = num_eval
        self.heldout_percent = heldout_percent
        self.skipped_lines = 0

        train = self._read(train_file, "task.train_file") if train_file is not None else None
        evaluation = self._read(eval_file, "task.eval_file") if eval_file is not None else None
        first = (train or evaluation).rows[0]  # type: ignore[union-attr]
        where = (train or evaluation).path  # type: ignore[union-attr]
        self.layout: Layout = LAYOUTS[layout] if layout != "auto" else detect_layout(first, self.mapped, str(where))
        unknown = sorted(set(self.mapped) - set(self.layout.roles))
        if unknown:
            raise ConfigError(
                f"task.fields.{unknown[0]}{did_you_mean(unknown[0], self.layout.roles)}: layout {self.layout.name!r} "
                f"has the roles {', '.join(self.layout.roles)}; pass other fields to rewards with task.extra_fields"
            )
        self.format_prompt = PromptFormatter(
            self.layout.template if prompt_template is None else prompt_template,
            system_prompt,
            prompt_suffix,
            chat_template,
            tokenizer,
        )
        train_rows = self._convert(train) if train is not None else []
        if evaluation is not None:
            self._train_rows, eval_rows = train_rows, self._convert(evaluation)
        else:
            self._train_rows = [row for row in train_rows if not is_heldout(row.key, heldout_percent)]
            eval_rows = [row for row in train_rows if is_heldout(row.key, heldout_percent)]
            if not self._train_rows or not eval_rows:
                raise ConfigError(
                    f"{train_file}: {heldout_percent}% held out leaves {len(self._train_rows)} training and "
                    f"{len(eval_rows)} evaluation records; set task.eval_file or change task.heldout_percent"
                )
        self._eval_rows = eval_rows[:num_eval] if num_eval is not None else eval_rows
        self._check_template((self._train_rows or self._eval_rows)[0])

    def _read(self, path: str, option: str) -> Records:
        records = read_records(path, self.file_format, option)
        self.skipped_lines += records.skipped
        return records

    def _convert(self, records: Records) -> list[Row]:
        passthrough: set[str] = set()
        if self.layout.passthrough:  # the union over records, so that every example has the same fields
            read = set(self.mapped.values()) | {name for names in self.layout.roles.values() for name in names}
            passthrough = {name for row in records.rows for name in row} - read - RESERVED_FIELDS
        rows, skipped = [], []
        for index, record in enumerate(records.rows):
            try:
                rows.append(self._row(record, index, records, passthrough))
            except SkippedRecord as exc:
                skipped.append(str(exc))
        if skipped and not rows:
            raise ConfigError(skipped[0])
        if skipped:
            self.skipped_lines += len(skipped)
            logger.warning(
                "skipped %d record(s) of %s without a gold answer (%d loaded): %s%s",
                len(skipped),
                records.path,
                len(rows),
                "; ".join(skipped[:3]),
                f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "",
            )
        return rows

    def _sources(self, role: str) -> tuple[str, ...]:
        return (self.mapped[role],) if role in self.mapped else self.layout.roles[role]

    def _row(self, record: Mapping[str, Any], index: int, records: Records, passthrough: set[str]) -> Row:
        where = records.where(index)
        for name, value in record.items():
            if _longest_text(value) > MAX_FIELD_CHARS:
                raise ConfigError(
                    f"{where}: field {name!r} holds {_longest_text(value):,} characters, more than the "
                    f"{MAX_FIELD_CHARS:,} a record's text may have (dllm.data.file.MAX_FIELD_CHARS): no prompt or "
                    f"answer is this long; fix or drop that line"
                )
        values = {}
        for role in self.layout.roles:
            values[role] = next((record[name] for name in self._sources(role) if not _absent(record.get(name))), None)
            mapped_but_absent = role in self.mapped and self.mapped[role] not in record
            if values[role] is None and (role in self.layout.required or (role == ANSWER and role in self.mapped)):
                raise SkippedRecord(self._missing(role, self._sources(role), record, where))
            if mapped_but_absent:
                raise ConfigError(self._missing(role, self._sources(role), record, where))
        if ANSWER in passthrough and _absent(record.get(ANSWER)):
            raise SkippedRecord(f"{where} has no {ANSWER!r} (null or missing) while other records of the file do")
        try:
            converted = self.layout.convert(values, record)
        except MissingRole as exc:
            message = self._missing(exc.role, exc.candidates or self._sources(exc.role), record, where)
            raise (SkippedRecord if exc.role == ANSWER else ConfigError)(message) from None
        except ConfigError as exc:
            raise ConfigError(f"{where} (layout {self.layout.name}): {exc}") from None
        fields = dict(converted.fields)
        for name in sorted(passthrough):
            fields[name] = record.get(name)
        for name, source in self.extra_fields.items():
            if source not in record:
                raise ConfigError(
                    f"{where} has no field {source!r} for task.extra_fields.{name}; "
                    f"its fields: {', '.join(sorted(record))}"
                )
            fields[name] = record[source]
        namespace = {**record, **fields, **converted.extras}
        if converted.question is not None:
            namespace["question"] = converted.question
        key = json.dumps({"question": converted.question, **fields}, sort_keys=True, default=str)
        return Row(namespace, converted.response, fields, key, where)

    def _missing(self, role: str, sources: tuple[str, ...], record: Mapping[str, Any], where: str) -> str:
        wanted = " or ".join(repr(name) for name in sources) or repr(role)
        present = sorted(name for name, value in record.items() if not _absent(value))
        return (
            f"{where} has no field {wanted} (the {role!r} of layout "
            f"{self.layout.name!r}); its fields: {', '.join(present) or 'none'}. Map the role to your "
            f"field with task.fields.{role}=FIELD_NAME, or choose another task.layout"
        )

    def _check_template(self, row: Row) -> None:
        """Render one prompt now, so a template naming a missing field fails at start-up."""
        render(self.format_prompt.template, row.values)  # raises, naming the field and the known ones

    def example(self, row: Row) -> Example:
        return Example(prompt=self.format_prompt(row.values), response=row.response, fields=dict(row.fields))

    def train_example(self, rng: random.Random) -> Example:
        if not self._train_rows:
            raise ConfigError(
                "this file task has no training records (only task.eval_file is set); set task.train_file to train"
            )
        return self.example(self._train_rows[rng.randrange(len(self._train_rows))])

    @cached_property
    def _eval_examples(self) -> list[Example]:
        return [self.example(row) for row in self._eval_rows]

    def eval_examples(self) -> list[Example]:
        return list(self._eval_examples)

    def located_prompts(self) -> Iterator[tuple[str, str]]:
        """(FILE:LINE, prompt) of every training and held-out record, for start-up checks."""
        for row in [*self._train_rows, *self._eval_rows]:
            yield row.where, self.format_prompt(row.values)

    @property
    def num_train(self) -> int:
        return len(self._train_rows)
