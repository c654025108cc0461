"""The wheel ships every file the package reads: pyproject's package-data covers each non-Python
file under dllm/ (a new nested config group cannot be left out). .ci/run checks the built wheel."""

from glob import glob
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).parents[2]


def shipped(package_data: dict[str, list[str]]) -> set[Path]:
    """The files the patterns select, globbed as setuptools does (`**` recursive) from each package."""
    files = set()
    for package, patterns in package_data.items():
        folder = ROOT.joinpath(*package.split("."))
        for pattern in patterns:
            files |= {folder / name for name in glob(pattern, root_dir=folder, recursive=True)}
    return {path for path in files if path.is_file()}


def data_files() -> set[Path]:
    return {
        path
        for path in (ROOT / "dllm").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }


def test_package_data_covers_every_data_file():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    files = data_files()
    assert {p.relative_to(ROOT).as_posix() for p in files} >= {
        "dllm/conf/train.yaml",
        "dllm/conf/algorithm/estimator/trace.yaml",
        "dllm/conf/algorithm/curriculum/pass_rate.yaml",
        "dllm/data/samples/sudoku.csv",
    }
    missing = sorted(p.relative_to(ROOT).as_posix() for p in files - shipped(package_data))
    assert not missing, f"pyproject.toml's [tool.setuptools.package-data] leaves these out of the wheel: {missing}"
