"""The file readers behind the `file` task (`data/file.py`): JSON Lines, JSON, parquet, CSV, from local paths only.

Records load through `datasets` (arrow-backed; its cache makes a second load of the same
file cheap). A JSON or JSON Lines file that `datasets` cannot read whole (a malformed line,
a value whose type changes from record to record) is read again line by line with the
standard library: each bad line is reported with its file and line number and skipped, the
rest loads. Nothing is ever fetched from a hub: a path that does not exist is an error.

`pkg://PACKAGE/FILE` names a file shipped inside an installed package, e.g.
`pkg://dllm.data.samples/gsm8k.jsonl` (the sample files of `dllm/data/samples/`).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from dllm.errors import ConfigError

logger = logging.getLogger(__name__)

PKG_PREFIX = "pkg://"
FILE_FORMATS = ("jsonl", "json", "parquet", "csv")
SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
}
_REPORTED_LINES = 10  # bad lines named one by one in the warning; the rest are counted


@dataclass(frozen=True)
class Records:
    """The records of one file, in file order. `bad_lines`: `"FILE:LINE: why"` for each
    line that was skipped (malformed JSON, not an object, undecodable bytes)."""

    path: Path
    rows: tuple[dict[str, Any], ...]
    bad_lines: tuple[str, ...] = ()
    lines: tuple[int, ...] = ()  # each row's line number, in a JSON Lines file

    @property
    def skipped(self) -> int:
        return len(self.bad_lines)

    def where(self, index: int) -> str:
        """`FILE:LINE` of row `index` in a JSON Lines file, else `FILE: record N`."""
        return f"{self.path}:{self.lines[index]}" if self.lines else f"{self.path}: record {index + 1}"


def resolve_path(path: str, option: str = "task.train_file") -> Path:
    """The local file `path` names (`~` expanded, `pkg://PACKAGE/FILE` inside a package).

    Raises `ConfigError` naming `option` when there is no such file."""
    text = str(path)
    if text.startswith(PKG_PREFIX):
        package, _, name = text[len(PKG_PREFIX) :].partition("/")
        try:
            root = files(package)
        except ModuleNotFoundError:
            raise ConfigError(f"{option}={text!r}: no installed package {package!r}") from None
        resolved = Path(str(root.joinpath(name)))
    else:
        resolved = Path(text).expanduser()
    if not resolved.is_file():
        hint = ""
        if not text.startswith((PKG_PREFIX, "/", ".", "~")) and text.count("/") == 1 and "." not in text:
            hint = (
                " dllm reads local files only, never a hub: save the data set to a file first (e.g. "
                "datasets' load_dataset(...).to_json('train.jsonl')) and point at that file."
            )
        raise ConfigError(f"{option}={text!r}: no such file ({resolved}).{hint}")
    return resolved


def file_format(path: Path, declared: str = "auto", option: str = "task.file_format") -> str:
    """`declared`, or the format the file's suffix names (`.jsonl`, `.json`, `.parquet`, `.csv`)."""
    if declared != "auto":
        if declared not in FILE_FORMATS:
            raise ConfigError(f"{option}={declared!r}: expected auto or one of {', '.join(FILE_FORMATS)}")
        return declared
    suffixes = [s.lower() for s in path.suffixes]
    for suffix in reversed(suffixes):
        if suffix in SUFFIXES:
            return SUFFIXES[suffix]
    raise ConfigError(
        f"cannot tell the format of {path} from its suffix; name the file *.jsonl, *.json, *.parquet or *.csv, "
        f"or set {option}=jsonl|json|parquet|csv"
    )


def read_records(path: str | Path, declared_format: str = "auto", option: str = "task.train_file") -> Records:
    """Every record of the file at `path` as a dict, in file order; see the module docstring.

    Malformed lines of a JSON Lines file are skipped with one warning naming each
    (`FILE:LINE: why`); a file with no readable record at all is a `ConfigError`."""
    resolved = resolve_path(str(path), option)
    fmt = file_format(resolved, declared_format)
    records = _read(resolved, fmt)
    if records.bad_lines:
        shown = "; ".join(records.bad_lines[:_REPORTED_LINES])
        more = f"; and {records.skipped - _REPORTED_LINES} more" if records.skipped > _REPORTED_LINES else ""
        logger.warning(
            "skipped %d malformed line(s) of %s (%d records loaded): %s%s",
            records.skipped,
            resolved,
            len(records.rows),
            shown,
            more,
        )
    if not records.rows:
        why = f" ({records.skipped} malformed lines, e.g. {records.bad_lines[0]})" if records.bad_lines else ""
        raise ConfigError(f"{option}={str(path)!r} holds no records{why}; fix the file or point at another one")
    return records


def read_json_lines(path: str | Path, option: str = "task.train_file") -> Records:
    """Every line of the JSON Lines file at `path` parsed by the standard library, as written (no
    type unified across records, as `datasets` would), bad lines in `bad_lines` and not logged:
    for readers that refuse a file with any bad line rather than skip it."""
    return _read_json_by_lines(resolve_path(str(path), option), "jsonl")


def _read(resolved: Path, fmt: str) -> Records:
    if fmt == "json":
        _refuse_wrapped_records(resolved)
    try:
        rows = tuple(_load_with_datasets(resolved, fmt))
        return Records(resolved, rows, lines=_line_numbers(resolved, len(rows)) if fmt == "jsonl" else ())
    except Exception as exc:  # datasets raises many types; JSON gets a second, forgiving reader
        if fmt not in ("json", "jsonl"):
            raise ConfigError(f"cannot read {resolved} as {fmt}: {type(exc).__name__}: {exc}") from None
        logger.debug("datasets could not load %s whole (%s); reading it line by line", resolved, exc)
    return _read_json_by_lines(resolved, fmt)


def _line_numbers(path: Path, count: int) -> tuple[int, ...]:
    """The numbers of the non-blank lines of `path`, which hold its `count` records (or none
    when they are not `count`)."""
    with path.open("rb") as handle:
        numbers = tuple(number for number, line in enumerate(handle, 1) if line.strip())
    return numbers if len(numbers) == count else ()


def _load_with_datasets(path: Path, fmt: str) -> list[dict[str, Any]]:
    import datasets

    datasets.utils.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()
    kwargs: dict[str, Any] = {}
    if fmt == "csv":  # every column as text: "0140..." keeps its leading zero, "3" stays "3"
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        kwargs["features"] = datasets.Features({name: datasets.Value("string") for name in header})
    builder = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}[fmt]
    dataset = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    return dataset.to_list()


def _refuse_wrapped_records(path: Path) -> None:
    """Refuse a JSON file that is one object holding the records in a list (`{"data": [...]}`):
    read as is, it would be a single record."""
    with path.open("rb") as handle:
        start = handle.read(64).lstrip()[:1]
    if start != b"{":
        return
    try:
        whole = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return  # JSON Lines (a second object follows the first), or malformed: read line by line
    lists = [key for key, value in whole.items() if isinstance(value, list) and value and isinstance(value[0], dict)]
    if lists:
        raise ConfigError(
            f"{path}: the top level is one JSON object whose {lists[0]!r} holds the records; dllm reads a JSON array "
            f"of records or JSON Lines: write the list under {lists[0]!r} to its own file"
        )


def _read_json_by_lines(path: Path, fmt: str) -> Records:
    """A JSON array file whole, or JSON Lines one line at a time, skipping bad lines."""
    raw = path.read_bytes()
    if fmt == "json" and raw.lstrip()[:1] == b"[":
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            where = f"{path}:{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(path)
            raise ConfigError(
                f"{where}: invalid JSON ({exc}); the file is one JSON array, so none of it loads: fix it, or "
                "write it as JSON Lines (one record per line), where a bad line is skipped"
            ) from None
        rows, bad = [], []
        for index, item in enumerate(data):
            if isinstance(item, dict):
                rows.append(item)
            else:
                bad.append(f"{path}: item {index} is {type(item).__name__}, not an object")
        return Records(path, tuple(rows), tuple(bad))
    rows, bad, lines = [], [], []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad.append(f"{path}:{number}: not UTF-8 ({exc.reason} at byte {exc.start})")
            continue
        except json.JSONDecodeError as exc:
            bad.append(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if isinstance(item, dict):
            rows.append(item)
            lines.append(number)
        else:
            bad.append(f"{path}:{number}: a JSON {type(item).__name__}, not an object")
    return Records(path, tuple(rows), tuple(bad), tuple(lines))
