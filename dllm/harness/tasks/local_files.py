"""The datasets of the shipped task YAMLs (their `custom_dataset`): JSON Lines files in this
folder, found next to this file wherever dllm is installed (a `data_files` path in a YAML
would be read relative to the working directory instead)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets

HERE = Path(__file__).parent


def jsonl_split(file_name: str, split: str = "test") -> datasets.DatasetDict:
    rows = [json.loads(line) for line in (HERE / file_name).read_text().splitlines() if line.strip()]
    return datasets.DatasetDict({split: datasets.Dataset.from_list(rows)})


# lm-eval calls `custom_dataset(**metadata, **dataset_kwargs)`; its metadata holds the model's
# arguments, which a local file does not need.
def addition_gen(**_: Any) -> datasets.DatasetDict:
    return jsonl_split("addition_gen.jsonl")


def addition_mc(**_: Any) -> datasets.DatasetDict:
    return jsonl_split("addition_mc.jsonl")
