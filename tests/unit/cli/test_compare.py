import json

import pytest

from dllm.cli.compare import (
    differing_overrides,
    find_runs,
    group_runs,
    main,
    mean_series,
    summarise,
    summarise_groups,
)
from dllm.errors import DllmError


def make_run(directory, overrides, records):
    (directory / ".hydra").mkdir(parents=True)
    (directory / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def sweep(tmp_path):
    make_run(
        tmp_path / "0_a",
        ["experiment=x", "algorithm=tracerl"],
        [
            {"stage": "warmup", "step": 10, "loss": 2.0, "step_time": 1.0},
            {"stage": "warmup", "step": 10, "eval/accuracy": 0.2},
            {"stage": "main", "step": 5, "loss": 0.5, "reward": 0.3, "step_time": 2.0},
            {"stage": "main", "step": 5, "eval/accuracy": 0.4},
        ],
    )
    make_run(
        tmp_path / "1_b",
        ["experiment=x", "algorithm=diffu_grpo"],
        [
            {"step": 5, "loss": 0.7, "reward": 0.1, "step_time": 3.0, "elapsed": 6.0},
            {"step": 5, "eval/accuracy": 0.25, "elapsed": 7.5},
        ],
    )
    return tmp_path


def test_the_table_names_what_differs_and_the_final_and_best_values(sweep):
    runs = find_runs([sweep])
    assert differing_overrides(runs) == [["algorithm=tracerl"], ["algorithm=diffu_grpo"]]
    rows = summarise(runs, ["eval/accuracy", "reward"])
    first, second = rows
    assert first["run"] == "algorithm=tracerl" and first["eval/accuracy final"] == 0.4
    assert first["eval/accuracy best"] == 0.4 and first["steps"] == 15  # the stages laid end to end
    assert first["wall time (s)"] == 3.0  # a log without `elapsed`: the logged steps' times
    assert second["wall time (s)"] == 7.5  # the trainer's running total, evaluations included
    assert second["eval/accuracy final"] == 0.25 and second["reward best"] == 0.1


def test_the_command_writes_the_table_json_and_plots(sweep, capsys):
    main([str(sweep), "--metric", "eval/accuracy", "--metric", "reward"])
    assert "| algorithm=tracerl | 0.4 | 0.4 |" in (sweep / "comparison.md").read_text()
    assert len(json.loads((sweep / "comparison.json").read_text())) == 2
    assert (sweep / "eval_accuracy.png").stat().st_size > 1000 and (sweep / "reward.png").is_file()
    assert "wrote" in capsys.readouterr().out


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(DllmError, match="no runs"):
        find_runs([tmp_path])


@pytest.fixture
def seeded_sweep(tmp_path):
    accuracies = {("tracerl", 0): [0.5, 0.9], ("tracerl", 1): [0.3, 0.7], ("diffu_grpo", 0): [0.1, 0.2]}
    for number, ((algorithm, seed), values) in enumerate(accuracies.items()):
        records = [{"step": 10 * (i + 1), "eval/accuracy": v, "elapsed": 5.0 * (i + 1)} for i, v in enumerate(values)]
        if seed == 1:  # a run that also logged a step the others did not: left out of the mean curve
            records.insert(0, {"step": 5, "eval/accuracy": 0.0})
        make_run(tmp_path / f"{number}", ["experiment=x", f"algorithm={algorithm}", f"seed={seed}"], records)
    return tmp_path


def test_over_seed_gives_mean_and_sample_std_per_setting(seeded_sweep):
    groups = group_runs(find_runs([seeded_sweep]), "seed")
    sizes = [(label, len(members)) for label, members in groups]
    assert sizes == [("algorithm=tracerl", 2), ("algorithm=diffu_grpo", 1)]
    tracerl, diffu = summarise_groups(groups, ["eval/accuracy"])
    assert tracerl["runs"] == 2 and tracerl["eval/accuracy final"].values == [0.9, 0.7]
    assert tracerl["eval/accuracy final"].mean == pytest.approx(0.8)
    assert tracerl["eval/accuracy final"].std == pytest.approx(0.1414213, rel=1e-5)  # sample std: sqrt(0.02)
    assert str(diffu["eval/accuracy best"]) == "0.2 ± 0"
    steps, mean, low, high = mean_series(groups[0][1], "eval/accuracy")
    assert steps == [10, 20] and mean == pytest.approx([0.4, 0.8]) and low == [0.3, 0.7] and high == [0.5, 0.9]


def test_the_command_over_seed_writes_mean_rows(seeded_sweep):
    main([str(seeded_sweep), "--metric", "eval/accuracy", "--over", "seed"])
    table = (seeded_sweep / "comparison.md").read_text()
    assert "| algorithm=tracerl | 2 | 0.8 ± 0.14 | 0.8 ± 0.14 |" in table
    rows = json.loads((seeded_sweep / "comparison.json").read_text())
    assert rows[0]["eval/accuracy final"]["values"] == [0.9, 0.7]
    assert (seeded_sweep / "eval_accuracy.png").stat().st_size > 1000


def test_torn_metrics_lines_are_skipped_with_a_warning_naming_each(sweep, caplog):
    path = sweep / "1_b" / "metrics.jsonl"
    good = path.read_text().splitlines()
    path.write_bytes(f'{good[0]}\n{{"step": 3, "lo\n\xff\xfe\n{good[1]}\n{{"step": 6, "eval/acc'.encode())
    with caplog.at_level("WARNING", logger="dllm.compare"):
        runs = find_runs([sweep])
    assert [r["step"] for r in runs[1].records] == [5, 5]
    assert summarise(runs, ["eval/accuracy"])[1]["eval/accuracy final"] == 0.25
    assert [f"{path}:{n}:" in caplog.text for n in (2, 3, 5)] == [True, True, True]
