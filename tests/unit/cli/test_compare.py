import json

import pytest

from dllm.cli.compare import (
    curves_figure,
    differing_overrides,
    find_runs,
    group_runs,
    main,
    mark_ties,
    mean_series,
    repeats_over,
    smooth,
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


def test_best_is_the_lowest_loss_and_the_highest_accuracy(sweep):
    first, _ = summarise(find_runs([sweep]), ["loss", "eval/accuracy", "lr"])
    assert first["loss best"] == 0.5 and first["loss final"] == 0.5  # the losses were 2.0 then 0.5
    assert first["eval/accuracy best"] == 0.4
    assert "lr final" in first and "lr best" not in first  # a setting has no best


def test_the_table_says_which_way_each_metric_was_read(sweep):
    main([str(sweep), "--metric", "loss", "--metric", "eval/accuracy", "--metric", "lr"])
    first_line = (sweep / "comparison.md").read_text().splitlines()[0]
    assert first_line.startswith("best: lowest loss; highest eval/accuracy; none for lr (")


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


def test_smoothing_is_a_centred_moving_average():
    assert smooth([0.0, 1.0, 2.0, 3.0, 4.0], 3) == [0.5, 1.0, 2.0, 3.0, 3.5]
    assert smooth([0.0, 2.0, 4.0, 6.0], 2) == [0.0, 1.0, 3.0, 5.0]  # one before, none after
    assert smooth([0.0, 4.0, 0.0, 4.0], 1) == [0.0, 4.0, 0.0, 4.0]
    assert smooth([1.0, 1.0, 7.0], 10) == [3.0, 3.0, 3.0]


def test_identical_curves_get_their_own_line_style_and_marker(tmp_path):
    records = [{"step": s, "eval/accuracy": 0.1 * s} for s in range(1, 6)]
    for name in ("a", "b", "c"):
        make_run(tmp_path / name, [f"algorithm={name}"], records)
    runs = find_runs([tmp_path])
    figure = curves_figure([(run.overrides[0], [run]) for run in runs], "eval/accuracy")
    axes = figure.axes[0]
    lines = axes.get_lines()
    assert len(lines) == 3 and all(list(line.get_ydata()) == [0.1 * s for s in range(1, 6)] for line in lines)
    assert len({line.get_linestyle() for line in lines}) == 3 and len({line.get_marker() for line in lines}) == 3
    assert [line.get_markevery() for line in lines] == [(0, 3), (1, 3), (2, 3)]  # markers on different points
    assert axes.get_ylim() == (-0.02, 1.02)  # a share: the whole [0, 1]
    assert axes.get_title().splitlines() == ["eval/accuracy (higher is better)", "3 runs by algorithm"]


def test_a_smoothed_plot_shows_the_average_over_the_faint_raw_curve_on_a_free_axis(sweep):
    runs = find_runs([sweep])
    figure = curves_figure([("all", runs[:1])], "loss", smoothing=2)
    axes = figure.axes[0]
    smoothed, raw = axes.get_lines()
    assert list(smoothed.get_ydata()) == [2.0, 1.25] and list(raw.get_ydata()) == [2.0, 0.5]
    assert raw.get_alpha() == 0.25
    assert axes.get_ylim() != (-0.02, 1.02)
    assert (
        "loss (lower is better)" in axes.get_title() and "smoothed: centred mean of 2 logged values" in axes.get_title()
    )


def test_runs_that_differ_only_by_seed_are_grouped_and_banded_by_default(seeded_sweep, capsys):
    runs = find_runs([seeded_sweep])
    assert repeats_over(runs, "seed") and not repeats_over(runs, "experiment")  # experiment=x: shared
    main([str(seeded_sweep), "--metric", "eval/accuracy"])
    assert "over seed (--over none: each run)" in capsys.readouterr().out
    assert "| algorithm=tracerl | 2 | 0.8 ± 0.14 |" in (seeded_sweep / "comparison.md").read_text()
    figure = curves_figure(group_runs(runs, "seed"), "eval/accuracy", over="seed")
    bands = figure.axes[0].collections
    assert len(bands) == 1  # the 2-seed setting's min-max band; the 1-run setting has none
    assert "mean over seed, band min-max" in figure.axes[0].get_title()
    main([str(seeded_sweep), "--metric", "eval/accuracy", "--over", "none"])
    assert "| algorithm=tracerl seed=0 | 0.9 |" in (seeded_sweep / "comparison.md").read_text()


def make_ablation_run(directory, overrides, accuracies, completions=640, temperature=1.0, steps=8, rss=900.0):
    """A run of the fair ablation: evaluations every 320 completions (with the running total and
    peak memory the trainer logs with them), its saved config's rollout temperature and decoder."""
    records = []
    for i, accuracy in enumerate(accuracies, start=1):
        records.append({"step": 10 * i, "loss": 0.1, "step_time": 1.0, "elapsed": 20.0 * i})
        seen = completions * i // len(accuracies)
        records.append({"step": 10 * i, "eval/accuracy": accuracy, "completions_seen": seen,
                        "completions_trained": 300 * i, "peak_rss_mb": rss + i, "elapsed": 20.0 * i + 1})  # fmt: skip
    make_run(directory, overrides, records)
    config = {"algorithm": {"temperature": temperature}, "sampler": {"steps": steps, "temperature": 0.0}}
    (directory / "config.yaml").write_text(json.dumps(config))  # JSON is YAML


FINALS = {"a": [0.8, 0.9, 1.0], "b": [0.78, 0.82, 0.80], "c": [0.50, 0.52, 0.54]}


@pytest.fixture
def ablation(tmp_path):
    for algorithm, finals in FINALS.items():
        for seed, final in enumerate(finals):
            overrides = ["experiment=t1", f"algorithm={algorithm}", f"seed={seed}"]
            make_ablation_run(tmp_path / f"t1_{algorithm}_{seed}", overrides, [0.3, final])
    for seed in range(3):  # another task: its one algorithm is its own best, whatever t1's scores
        make_ablation_run(tmp_path / f"t2_c_{seed}", ["experiment=t2", "algorithm=c", f"seed={seed}"], [0.1, 0.2])
    return tmp_path


def test_settings_within_the_spread_over_seeds_of_the_best_are_ties(ablation):
    rows = summarise_groups(group_runs(find_runs([ablation]), "seed"), ["eval/accuracy"])
    assert mark_ties(rows, "eval/accuracy", "algorithm") == [
        "eval/accuracy final vs best",
        "eval/accuracy best vs best",
    ]
    marks = {row["run"]: row["eval/accuracy final vs best"] for row in rows}
    # a: 0.9 ± 0.1 (the best); b: 0.8 ± 0.02, |0.8 - 0.9| = 0.1 <= 0.1 + 0.02: a tie;
    # c: 0.52 ± 0.02, 0.38 > 0.12: worse; on t2, c alone is its best
    assert marks == {
        "experiment=t1 algorithm=a": "best",
        "experiment=t1 algorithm=b": "tie",
        "experiment=t1 algorithm=c": "worse",
        "experiment=t2 algorithm=c": "best",
    }
    b = next(row for row in rows if row["run"] == "experiment=t1 algorithm=b")
    assert b["eval/accuracy final"].std == pytest.approx(0.02)
    assert b["completions seen"].mean == 640 and b["peak RSS (MiB)"].mean == 902.0


def test_one_run_per_setting_ties_only_an_equal_mean():
    rows = [{"run": "algorithm=a", "acc final": 0.5}, {"run": "algorithm=b", "acc final": 0.5},
            {"run": "algorithm=c", "acc final": 0.49}]  # fmt: skip
    mark_ties(rows, "acc", "algorithm")
    assert [row["acc final vs best"] for row in rows] == ["best", "tie", "worse"]


def test_the_ablation_table_has_work_memory_and_tie_columns_and_no_warning_when_fair(ablation, caplog):
    with caplog.at_level("WARNING", logger="dllm.compare"):
        main([str(ablation), "--metric", "eval/accuracy", "--x", "completions_seen"])
    table = (ablation / "comparison.md").read_text()
    header = table.splitlines()[2]
    for column in ("completions seen", "peak RSS (MiB)", "eval/accuracy final vs best", "wall time (s)"):
        assert f"| {column} |" in header
    assert "| experiment=t1 algorithm=b | 3 | 0.8 ± 0.02 |" in table and "| tie |" in table
    assert "unfair" not in table and "unfair" not in caplog.text
    figure = curves_figure(group_runs(find_runs([ablation]), "seed"), "eval/accuracy", x="completions_seen")
    assert list(figure.axes[0].get_lines()[0].get_xdata()) == [320.0, 640.0]


def test_runs_that_redrew_rollouts_are_aligned_by_evaluation_on_a_counter(tmp_path):
    """Dynamic sampling: each seed reaches its own completion counts; the curve is kept, at their means."""
    for seed, completions in enumerate([900, 1100]):
        make_ablation_run(tmp_path / f"dapo_{seed}", ["algorithm=dapo", f"seed={seed}"], [0.4, 0.6], completions)
    groups = group_runs(find_runs([tmp_path]), "seed")
    steps, mean, low, high = mean_series(groups[0][1], "eval/accuracy", x="completions_seen")
    assert steps == [500.0, 1000.0]  # (450 + 550) / 2, (900 + 1100) / 2
    assert mean == pytest.approx([0.4, 0.6]) and low == [0.4, 0.6] and high == [0.4, 0.6]
    assert mean_series(groups[0][1], "eval/accuracy")[0] == [10, 20]  # steps: common to both, as before


@pytest.mark.parametrize(
    "changed, message",
    [
        ({"completions": 320}, "completions seen experiment=t1 algorithm=a: 640, experiment=t1 algorithm=b: 320"),
        ({"temperature": 0.9}, "rollout temperature experiment=t1 algorithm=a: 1, experiment=t1 algorithm=b: 0.9"),
        ({"steps": 16}, "evaluation decoders differ in sampler.steps"),
    ],
)
def test_unequal_completions_temperature_or_decoder_is_warned_in_one_line(ablation, changed, message, caplog):
    for seed in range(3):
        overrides = ["experiment=t1", "algorithm=b", f"seed={seed}"]
        directory = ablation / f"t1_b_{seed}"
        for path in sorted(directory.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        directory.rmdir()
        make_ablation_run(directory, overrides, [0.3, 0.8], **changed)
    with caplog.at_level("WARNING", logger="dllm.compare"):
        main([str(ablation), "--metric", "eval/accuracy"])
    warned = [r.getMessage() for r in caplog.records if "unfair" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("warning: unfair comparison (experiment=t1): ")
    assert message in warned[0]
    assert warned[0] in (ablation / "comparison.md").read_text()  # written above the table, too


def test_an_override_holding_an_interpolation_is_read_as_typed(tmp_path):
    make_run(
        tmp_path / "a", ["algorithm=rl", "trainer.max_steps=${dllm.rollout_steps:400}"], [{"step": 1, "loss": 1.0}]
    )
    make_run(
        tmp_path / "b", ["algorithm=wd1", "trainer.max_steps=${dllm.rollout_steps:400}"], [{"step": 1, "loss": 2.0}]
    )
    assert differing_overrides(find_runs([tmp_path])) == [["algorithm=rl"], ["algorithm=wd1"]]
