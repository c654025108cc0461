"""docs/adding_components.md, followed: its files (each code block named `# file: PATH` on its
first line) are written to a temporary package, `my_dllm`, declared a plugin by the entry points
of its `pyproject.toml` block (an `.dist-info` beside it, as `pip install -e` makes); then a fresh
interpreter (tests/follow_adding_components.py) builds and runs every component it adds."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "adding_components.md"
FILE_BLOCK = re.compile(r"^```\w+\n(# file: (\S+)\n.*?)^```$", re.S | re.M)


def doc_files() -> dict[str, str]:
    return {path: text for text, path in FILE_BLOCK.findall(DOC.read_text())}


def install(files: dict[str, str], root: Path) -> None:
    """The package's files, an empty `__init__.py` in each of its folders, and the metadata of
    an installed distribution declaring its entry points."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads(files["pyproject.toml"])["project"]
    for path, text in files.items():
        if path != "pyproject.toml":
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
    for folder in {(root / path).parent for path in files if path != "pyproject.toml"}:
        (folder / "__init__.py").touch()
    dist_info = root / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    groups = project["entry-points"]
    (dist_info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()) + "\n"
            for group, points in groups.items()
        )
    )


def test_the_doc_names_a_file_for_every_kind_it_adds():
    assert sorted(doc_files()) == sorted(
        [
            "my_dllm/centred.py",
            "my_dllm/confident.py",
            "my_dllm/conf/algorithm/advantage/my_centred.yaml",
            "my_dllm/conf/algorithm/filter/my_spread.yaml",
            "my_dllm/conf/model/mini_tiny.yaml",
            "my_dllm/conf/reward/my_keyword.yaml",
            "my_dllm/conf/sampler/my_confident.yaml",
            "my_dllm/conf/task/my_copy.yaml",
            "my_dllm/copy_task.py",
            "my_dllm/keyword.py",
            "my_dllm/mini.py",
            "my_dllm/plugin.py",
            "my_dllm/spread.py",
            "pyproject.toml",
        ]
    )


def test_following_the_doc_adds_a_model_family_sampler_reward_and_task_that_work(tmp_path):
    package = tmp_path / "site"
    install(doc_files(), package)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(package), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "TQDM_DISABLE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.follow_adding_components", str(tmp_path / "out")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["plugin_failures"] == {}
    assert report["registered"] == {
        "model": ["mini", "mini_tiny"], "sampler": True, "reward": True, "task": True, "advantage": True, "filter": True
    }  # fmt: skip
    assert report["configs"] == {
        "model": "MiniLM",
        "sampler": "my_confident",
        "reward": "my_keyword",
        "task": "my_copy",
    }

    model = report["model"]
    assert (model["class"], model["value_class"]) == ("MiniLM", "MiniValueModel")
    assert model["value_shape"] == [2, 5] and model["values_all_zero"] and model["value_backbone_is_the_policy's"]
    assert model["parameters"] < 250_000

    # 8 tokens, 3 revealed per forward: 3 + 3 + 2, steps 0, 1, 2
    assert report["sampler"]["nfe"] == 3 and report["sampler"]["steps"] == [0, 1, 2]
    assert "full-attention models only" in report["sampler"]["block_model_refusal"]

    reward = report["reward"]
    assert reward["scores"] == [1.0, 0.0, 1.0]
    assert reward["terms"] == {"my_keyword": [1.0, 0.0], "exact_match": [1.0, 0.0]}
    assert reward["weighted_total"] == [1.5, 0.0]

    task = report["task"]
    assert (task["train_ending_in_7"], task["eval"], task["eval_ending_in_7"]) == (0, 16, 16) and task["eval_is_fixed"]
    prompt, response, fields = task["first"]
    assert prompt == f"copy {response}:" and fields == {"answer": response} and len(response) == 4

    train = report["train"]
    assert train["step"] == 1 and math.isfinite(train["loss"]) and train["grad_norm"] > 0
    assert train["eval_samples"] == 4 and train["checkpoint_class"] == "MiniLM"

    rl = report["rl_parts"]
    # group means 0.25 and 0.3: 1 - 0.25 = 0.75 clips to 0.5; spreads 1.0 (kept) and 0.2 (dropped)
    assert [pytest.approx(row) for row in ([0.5, -0.25, -0.25, -0.25], [-0.1, 0.1, 0.0, 0.0])] == rl["centred"]
    assert rl["kept"] == [True, False]
    assert rl["parts"] == "estimator trace, advantage my_centred, objective ppo, filters my_spread"
    assert rl["step"] == 1 and math.isfinite(rl["loss"]) and 0 <= rl["kept_fraction"] <= 1
