import json
import logging

import pytest

from dllm.data.readers import file_format, read_records, resolve_path
from dllm.errors import ConfigError


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_a_shipped_sample_is_named_with_pkg():
    path = resolve_path("pkg://dllm.data.samples/gsm8k.jsonl")
    assert path.is_file() and path.name == "gsm8k.jsonl"
    records = read_records("pkg://dllm.data.samples/gsm8k.jsonl")
    assert len(records.rows) == 12 and records.skipped == 0
    assert set(records.rows[0]) == {"question", "answer"}


def test_malformed_lines_are_reported_with_file_and_line_and_the_rest_loads(tmp_path, caplog):
    path = write_lines(
        tmp_path / "train.jsonl",
        [
            '{"question": "a", "answer": "1"}',
            '{"question": "b", "answer": ',  # cut short
            "",  # blank lines are not records and not errors
            '["not", "an", "object"]',
            '{"question": "c", "answer": "3"}',
        ],
    )
    with caplog.at_level(logging.WARNING, logger="dllm.data.readers"):
        records = read_records(path)
    assert [row["question"] for row in records.rows] == ["a", "c"]
    assert records.skipped == 2
    assert records.bad_lines[0].startswith(f"{path}:2: invalid JSON")
    assert records.bad_lines[1] == f"{path}:4: a JSON list, not an object"
    assert f"skipped 2 malformed line(s) of {path} (2 records loaded)" in caplog.text
    assert f"{path}:2:" in caplog.text and f"{path}:4:" in caplog.text


def test_undecodable_bytes_are_a_bad_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"question": "a"}\n{"question": "\xff"}\n')
    records = read_records(path)
    assert len(records.rows) == 1 and records.bad_lines[0].startswith(f"{path}:2: not UTF-8")


def test_a_file_of_bad_lines_only_is_an_error(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", ["{oops", "[1]"])
    with pytest.raises(ConfigError, match=r"holds no records \(2 malformed lines, e.g. .*train.jsonl:1: invalid"):
        read_records(path)


def test_types_that_change_between_records_still_load(tmp_path):
    path = write_lines(tmp_path / "mixed.jsonl", ['{"q": "a", "answer": 3}', '{"q": "b", "answer": [1, 2]}'])
    assert [row["answer"] for row in read_records(path).rows] == [3, [1, 2]]


def test_a_json_array_file_loads_and_a_broken_one_names_its_line(tmp_path):
    good = tmp_path / "data.json"
    good.write_text(json.dumps([{"question": "a"}, {"question": "b"}], indent=2))
    assert [row["question"] for row in read_records(good).rows] == ["a", "b"]
    broken = tmp_path / "broken.json"
    broken.write_text('[\n  {"question": "a"},\n  {"question": }\n]')
    with pytest.raises(ConfigError, match=rf"{broken}:3: invalid JSON .* write it as JSON Lines"):
        read_records(broken)


def test_a_json_object_of_lists_is_refused_naming_the_list(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"data": [{"question": "a"}], "version": 2}, indent=2))
    with pytest.raises(
        ConfigError, match=r"top level is one JSON object whose .data. holds the records.*write the list under .data."
    ):
        read_records(path)


def test_parquet_and_csv_load_through_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"question": "a", "nums": [1, 2]}, {"question": "b", "nums": [3]}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "data.parquet"))
    assert list(read_records(tmp_path / "data.parquet").rows) == rows
    (tmp_path / "grid.csv").write_text("Puzzle,Solution\n0140432014020000,2143432114323214\n")
    row = read_records(tmp_path / "grid.csv").rows[0]
    assert row == {"Puzzle": "0140432014020000", "Solution": "2143432114323214"}  # leading zero kept


def test_missing_files_unknown_suffixes_and_hub_names_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"task.train_file='/no/such.jsonl': no such file"):
        read_records("/no/such.jsonl")
    with pytest.raises(ConfigError, match=r"reads local files only, never a hub"):
        read_records("openai/gsm8k")
    with pytest.raises(ConfigError, match=r"no installed package 'nosuchpkg'"):
        read_records("pkg://nosuchpkg/x.jsonl")
    odd = tmp_path / "data.txt"
    odd.write_text("{}")
    with pytest.raises(ConfigError, match=r"set task.file_format=jsonl\|json\|parquet\|csv"):
        read_records(odd)
    assert file_format(odd, "jsonl") == "jsonl" and file_format(tmp_path / "x.JSONL") == "jsonl"
