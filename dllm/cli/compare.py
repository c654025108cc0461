"""`dllm-compare`: turn a sweep (or any set of runs) into an ablation table and curves.

dllm-compare multirun/2026-11-25/10-00-00             # every run under a sweep directory
dllm-compare outputs/a outputs/b --metric eval/accuracy --out report/
dllm-compare multirun/... --over seed                   # one row per setting: mean ± std over seeds
dllm-compare multirun/... --smooth 5                    # curves: centred moving average of 5 logged values
dllm-compare multirun/... --between algorithm           # rank the algorithms of each task x model: ties
dllm-compare multirun/... --over seed --x completions_seen   # curves against the completions seen so far

For each run (a directory with `metrics.jsonl`): the command-line overrides that differ
between runs (from Hydra's `.hydra/overrides.yaml`, else the run's name), the final and best
value of each chosen metric, its steps and wall time. "Best" is the lowest value for metrics
that improve downwards (loss, NFE, times, reward failures, truncated) and the highest for the
others (accuracy, reward, pass@k, tokens/s); a setting such as lr has none. Names not in
dllm/cli/directions.py: those containing loss, time, nfe, fail, error or seconds are better
lower, the rest higher; the table's first line says which way each metric was read.

Each row also gives the work and resources of the run, where its log has them: `completions
seen` (RL: completions decoded and scored by rollouts, every try counted; the last
`completions_seen` of each stage, summed), `peak RSS (MiB)` and `peak GPU memory (MiB)` (the
largest logged `peak_rss_mb` / `peak_gpu_memory_mb`, which the trainer logs with every
evaluation).

Ties: rows that differ only in `--between KEY=...` (default algorithm; the other overrides —
task, model — equal) are ranked on the first metric that has a direction, in its final and
its best value. A column `... vs best` says `best` for the setting with the best mean, `tie`
for one whose mean lies within the spread of it — |mean - best mean| <= its std + the best's
std (sample std over seeds, 0 for a single run): the intervals mean ± std overlap — else
`worse`. Fairness: a one-line warning (logged and written above the table) names any such set
of rows whose runs saw different numbers of completions, rolled out at different temperatures
(`algorithm.temperature`, else the sampler's) or were evaluated with different decoders (the
`sampler` node of each run's saved config.yaml).

Writes `comparison.md` (the table), `comparison.json`, and one PNG per metric with a curve per
run (a line style and marker each, so identical curves stay visible; shares such as accuracy
on a [0, 1] axis). With `--over KEY`, runs that differ only in `KEY=...` (several seeds of one
setting) make one row: the mean ± sample standard deviation of each number and the count of
runs, and one curve: the mean at the steps every run logged, with the runs' min-max band
(with `--x COUNTER`, runs that reached different counts — redrawn rollouts — are aligned by
evaluation, at the mean of their counts).
Runs that repeat a setting with other seeds are grouped `--over seed` without asking
(`--over none` shows each run).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dllm.cli import directions
from dllm.cli.common import reports_user_errors, setup_logging
from dllm.errors import DllmError
from dllm.loggers import json_record
from dllm.run_files import CONFIG, HYDRA_OVERRIDES, METRICS

logger = logging.getLogger("dllm.compare")

DEFAULT_METRICS = ("eval/accuracy", "reward", "loss")
STEP = "step"


@dataclass
class Run:
    """One run's identity (its overrides) and its logged records."""

    path: Path
    overrides: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] | None = None  # the resolved run config (config.yaml), when saved

    def series(self, metric: str, x: str = STEP) -> list[tuple[float, float]]:
        """(global step, value) of every record holding `metric`; stages are laid end to end.
        With `x` a logged running total (`completions_seen`): (its value, value) of every record
        holding both (an RL stage's evaluations)."""
        if x != STEP:
            return [(float(r[x]), float(r[metric])) for r in self.records if metric in r and x in r]
        points, offset, last_stage, last_step = [], 0, None, 0
        for record in self.records:
            stage = record.get("stage")
            if stage != last_stage and last_stage is not None:
                offset += last_step
            last_stage, last_step = stage, record.get("step", 0)
            if metric in record:
                points.append((offset + record.get("step", 0), float(record[metric])))
        return points

    def total(self, counter: str) -> float | None:
        """A running total over the run (`completions_seen`): its last value in each stage,
        summed over the stages; None if never logged."""
        last: dict[Any, float] = {}
        for record in self.records:
            if counter in record:
                last[record.get("stage")] = float(record[counter])
        return sum(last.values()) if last else None

    def peak(self, metric: str) -> float | None:
        """The largest logged value of `metric` (a peak memory), None if never logged."""
        return max((float(r[metric]) for r in self.records if metric in r), default=None)

    def wall_time(self) -> float:
        """Seconds of training and evaluation: the last `elapsed` (the trainer's running total,
        carried over a resume) — else, for older logs, the sum of the logged steps' `step_time`."""
        elapsed = [float(r["elapsed"]) for r in self.records if "elapsed" in r]
        if elapsed:
            return elapsed[-1]
        return sum(float(r.get("step_time", 0.0)) for r in self.records)


def find_runs(paths: list[Path]) -> list[Run]:
    """Every run directory at or under `paths` (a directory holding `metrics.jsonl`)."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise DllmError(f"{str(path)!r} does not exist; give run directories or a sweep directory")
        found += [p.parent for p in sorted(path.rglob(METRICS))]
    if not found:
        raise DllmError(f"no runs (directories with metrics.jsonl) under {', '.join(map(str, paths))}")
    runs = []
    for directory in dict.fromkeys(found):
        overrides_file = directory.joinpath(*HYDRA_OVERRIDES)
        overrides = _read_overrides(overrides_file) if overrides_file.is_file() else [directory.name]
        runs.append(Run(directory, overrides, read_records(directory / METRICS), _read_config(directory)))
    return runs


def _read_config(directory: Path) -> dict[str, Any] | None:
    """The run's resolved config: `config.yaml`, else Hydra's `.hydra/config.yaml`; None without either."""
    import yaml

    for path in (directory / CONFIG, directory / ".hydra" / CONFIG):
        if path.is_file():
            return yaml.safe_load(path.read_text())
    return None


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON records of a `metrics.jsonl`; a line that is not one (a run killed mid-write, a
    full disk) is skipped with a warning naming FILE:LINE, so the rest of the run still compares."""
    records = []
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if not line.strip():
            continue
        record = json_record(line)
        if record is not None:
            records.append(record)
        else:
            logger.warning("warning: skipped %s:%d: not a JSON record (a torn or corrupted write)", path, number)
    return records


def _read_overrides(path: Path) -> list[str]:
    """The overrides as typed: plain YAML, so an interpolation (`trainer.max_steps=${dllm.rollout_steps:400}`)
    stays text (OmegaConf would try to resolve it inside the list)."""
    import yaml

    return [str(item) for item in yaml.safe_load(path.read_text()) or []]


def differing_overrides(runs: list[Run]) -> list[list[str]]:
    """Per run, the overrides not shared by every run (what the sweep varied)."""
    shared = set.intersection(*(set(run.overrides) for run in runs)) if runs else set()
    return [[item for item in run.overrides if item not in shared] or [run.path.name] for run in runs]


def summarise(runs: list[Run], metrics: list[str]) -> list[dict[str, Any]]:
    """One row per run: its differing overrides, final and best of each metric, steps, time."""
    rows = []
    for run, label in zip(runs, differing_overrides(runs)):
        row: dict[str, Any] = {"run": " ".join(label), "path": str(run.path)}
        for metric in metrics:
            series = run.series(metric)
            row[f"{metric} final"] = series[-1][1] if series else None
            if directions.better(metric) is not None:
                row[f"{metric} best"] = directions.best([v for _, v in series], metric)
        row["steps"] = max((step for step, _ in run.series("step_time")), default=0)
        row["wall time (s)"] = run.wall_time()
        row[COMPLETIONS] = run.total("completions_seen")
        row["peak RSS (MiB)"] = run.peak("peak_rss_mb")
        row["peak GPU memory (MiB)"] = run.peak("peak_gpu_memory_mb")
        rows.append(row)
    for column in (COMPLETIONS, "peak RSS (MiB)", "peak GPU memory (MiB)"):  # shown when some run logged it
        if all(row[column] is None for row in rows):
            for row in rows:
                del row[column]
    return rows


COMPLETIONS = "completions seen"


def override_key(item: str) -> str:
    """`algorithm` of `algorithm=tracerl` (and of `+algorithm=...`, `~algorithm`)."""
    return item.split("=", 1)[0].lstrip("+~")


def repeats_over(runs: list[Run], key: str) -> bool:
    """True when some setting was run more than once with other values of `key` (seeds)."""
    return any(len(members) > 1 for _, members in group_runs(runs, key)) and any(
        override_key(item) == key for label in differing_overrides(runs) for item in label
    )


def group_runs(runs: list[Run], over: str) -> list[tuple[str, list[Run]]]:
    """Runs grouped by their differing overrides less `over=...` (e.g. the seeds of one
    setting), in order of first appearance: (label, runs)."""
    groups: dict[str, list[Run]] = {}
    for run, label in zip(runs, differing_overrides(runs)):
        kept = [item for item in label if override_key(item) != over]
        groups.setdefault(" ".join(kept) or "(all)", []).append(run)
    return list(groups.items())


@dataclass
class Spread:
    """Several runs' values of one number: mean, sample standard deviation, the values."""

    values: list[float]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        if len(self.values) < 2:
            return 0.0
        mean = self.mean
        return (sum((v - mean) ** 2 for v in self.values) / (len(self.values) - 1)) ** 0.5

    def __str__(self) -> str:
        return f"{self.mean:.4g} ± {self.std:.2g}"

    def as_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "values": self.values}


def summarise_groups(groups: list[tuple[str, list[Run]]], metrics: list[str]) -> list[dict[str, Any]]:
    """One row per group: the mean ± std over its runs of every number `summarise` gives."""
    rows = []
    for label, members in groups:
        member_rows = summarise(members, metrics)
        row: dict[str, Any] = {"run": label, "runs": len(members), "path": [str(run.path) for run in members]}
        for key in member_rows[0]:
            if key in ("run", "path"):
                continue
            values = [r[key] for r in member_rows if r[key] is not None]
            row[key] = Spread([float(v) for v in values]) if values else None
        rows.append(row)
    return rows


def block_key(label: str, between: str) -> str:
    """The label less `between=...`: settings with the same key are compared with each other
    (the algorithms of one task and model family)."""
    return " ".join(item for item in label.split() if override_key(item) != between)


def mean_and_spread(value: Any) -> tuple[float, float]:
    """(mean, sample std over seeds) of a cell: a `Spread`, or one run's number (spread 0)."""
    return (value.mean, value.std) if isinstance(value, Spread) else (float(value), 0.0)


def mark_ties(rows: list[dict[str, Any]], metric: str, between: str) -> list[str]:
    """Add, for the final and best value of `metric`, a column `... vs best` to every row: `best`
    for the setting whose mean is best among those it is compared with (same label less
    `between=...`), `tie` where that difference is within the spread over seeds — |mean - best
    mean| <= its std + the best's std, i.e. the intervals mean ± std overlap — else `worse`.
    Returns the columns added."""
    lower = directions.better(metric) == "lower"
    added = []
    for column in (f"{metric} final", f"{metric} best"):
        if not any(row.get(column) is not None for row in rows):
            continue
        blocks: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            blocks.setdefault(block_key(row["run"], between), []).append(row)
        for members in blocks.values():
            scored = [row for row in members if row.get(column) is not None]
            if not scored:
                continue
            best = (min if lower else max)(scored, key=lambda row: mean_and_spread(row[column])[0])
            best_mean, best_std = mean_and_spread(best[column])
            for row in members:
                if row.get(column) is None:
                    row[f"{column} vs best"] = None
                    continue
                mean, std = mean_and_spread(row[column])
                tied = abs(mean - best_mean) <= std + best_std
                row[f"{column} vs best"] = "best" if row is best else ("tie" if tied else "worse")
        added.append(f"{column} vs best")
    return added


def rollout_temperature(config: dict[str, Any] | None) -> float | None:
    """The temperature RL rollouts sampled at: `algorithm.temperature`, else (null) the
    sampler's own; None for a run without rollouts or without a saved config."""
    algorithm = (config or {}).get("algorithm") or {}
    if "temperature" not in algorithm:
        return None
    temperature = algorithm["temperature"]
    return temperature if temperature is not None else (config.get("sampler") or {}).get("temperature")


def fairness_warnings(groups: list[tuple[str, list[Run]]], between: str) -> list[str]:
    """One line per set of compared settings (same label less `between=...`) whose runs saw
    different numbers of completions, sampled rollouts at different temperatures, or were
    evaluated with different decoders (the `sampler` of their saved configs); none when fair."""
    blocks: dict[str, list[tuple[str, Run]]] = {}
    for label, members in groups:
        blocks.setdefault(block_key(label, between), []).extend((label, run) for run in members)
    lines = []
    for block, runs in blocks.items():
        problems = []
        for aspect, value in (
            ("completions seen", lambda run: run.total("completions_seen")),
            ("rollout temperature", lambda run: rollout_temperature(run.config)),
        ):
            seen = {label: value(run) for label, run in runs if isinstance(value(run), (int, float))}
            if len(set(seen.values())) > 1:
                problems.append(f"{aspect} " + ", ".join(f"{label or '(all)'}: {v:g}" for label, v in seen.items()))
        decoders = {label: (run.config or {}).get("sampler") for label, run in runs if run.config}
        differing = sorted(
            {
                key
                for d in decoders.values()
                for key in (d or {})
                if len({str((e or {}).get(key)) for e in decoders.values()}) > 1
            }
        )
        if differing:
            problems.append("evaluation decoders differ in sampler." + ", sampler.".join(differing))
        if problems:
            where = f" ({block})" if block else ""
            lines.append(f"warning: unfair comparison{where}: " + "; ".join(problems))
    return lines


def mean_series(
    members: list[Run], metric: str, x: str = STEP
) -> tuple[list[float], list[float], list[float], list[float]]:
    """(steps, mean, min, max) of `metric` over `members` at the steps (or values of `x`) every one of
    them logged. A counter `x` the runs reached at different values (rollouts redrawn by dynamic
    sampling or inpainting: no value common to all) aligns them by evaluation instead — the k-th
    value each logged, at the mean of their counts — rather than leaving the curve out."""
    tables = [dict(run.series(metric, x)) for run in members]
    steps = sorted(set.intersection(*(set(table) for table in tables))) if tables else []
    if x != STEP and tables and any(len(table) > len(steps) for table in tables):
        logged = [sorted(table.items()) for table in tables]
        count = min(len(series) for series in logged)
        steps = [sum(series[k][0] for series in logged) / len(logged) for k in range(count)]
        columns = [[series[k][1] for series in logged] for k in range(count)]
    else:
        columns = [[table[step] for table in tables] for step in steps]
    return steps, [sum(c) / len(c) for c in columns], [min(c) for c in columns], [max(c) for c in columns]


def markdown_table(rows: list[dict[str, Any]], metrics: list[str], warnings: list[str] = ()) -> str:
    """The rows as a markdown table, under a line saying which way "best" read each metric (and
    any fairness warnings)."""
    columns = [key for key in rows[0] if key != "path"]

    def cell(value: Any) -> str:
        if value is None:
            return "—"
        return f"{value:.4g}" if isinstance(value, float) else str(value)  # Spread prints mean ± std

    lines = [direction_note(metrics), *warnings, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def direction_note(metrics: list[str]) -> str:
    """`best: lowest loss; highest eval/accuracy, reward (...)`: how each metric's best was chosen."""
    ways = {"lower": "lowest", "higher": "highest", None: "none for"}
    parts = []
    for direction, word in ways.items():
        named = [m for m in metrics if directions.better(m) == direction]
        if named:
            parts.append(f"{word} {', '.join(named)}")
    return f"best: {'; '.join(parts)} (dllm/cli/directions.py; other names: {directions.RULE})"


def smooth(values: list[float], window: int) -> list[float]:
    """Centred moving average: each value replaced by the mean of the `window` logged values
    around it (`window // 2` before, the rest after; fewer at the ends), so a curve is smoothed
    without being shifted along the steps; window 1 returns the values."""
    before, after = window // 2, (window - 1) // 2
    windows = [values[max(0, i - before) : i + after + 1] for i in range(len(values))]
    return [sum(around) / len(around) for around in windows]


LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_curves(
    groups: list[tuple[str, list[Run]]],
    metric: str,
    path: Path,
    smoothing: int = 1,
    over: str | None = None,
    x: str = STEP,
) -> bool:
    """Write `curves_figure` as a PNG at `path`; False (and no file) if no run logged `metric`."""
    import matplotlib.pyplot as plt

    figure = curves_figure(groups, metric, smoothing, over, x)
    if figure is None:
        return False
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return True


def curves_figure(
    groups: list[tuple[str, list[Run]]], metric: str, smoothing: int = 1, over: str | None = None, x: str = STEP
):
    """A figure with `metric` against the step for every group of runs that logged it (the mean,
    with the min-max band where a group holds several runs), each in its own line style and
    marker; None if none did. `smoothing` > 1 draws the moving average over that many logged
    values (centred), the raw curve faint behind it. Markers are hollow so that those of identical
    curves show through one another."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.3))
    plotted = 0
    for label, members in groups:
        steps, mean, low, high = mean_series(members, metric, x)
        if not steps:
            continue
        style = {"linestyle": LINE_STYLES[plotted % len(LINE_STYLES)], "marker": MARKERS[plotted % len(MARKERS)]}
        # ~12 markers a curve, and at least one point apart per curve: offset, identical curves'
        # markers sit on different points
        every = max(len(groups), len(steps) // 12, 1)
        shown = smooth(mean, smoothing)
        (line,) = axes.plot(
            steps, shown, markersize=5, markerfacecolor="none", markevery=(plotted % every, every), label=label, **style
        )
        if smoothing > 1:
            axes.plot(steps, mean, color=line.get_color(), alpha=0.25, linewidth=0.8)
        if len(members) > 1:
            axes.fill_between(
                steps, smooth(low, smoothing), smooth(high, smoothing), color=line.get_color(), alpha=0.15
            )
        plotted += 1
    if plotted:
        axes.set_title(plot_title(groups, metric, smoothing, over), fontsize=9)
        axes.set_xlabel("optimizer step (stages end to end)" if x == STEP else x)
        axes.set_ylabel(metric)
        if directions.is_share(metric):
            axes.set_ylim(-0.02, 1.02)  # a share's whole range, with room for markers at 0 and 1
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
        figure.tight_layout()
        return figure
    plt.close(figure)
    return None


def plot_title(groups: list[tuple[str, list[Run]]], metric: str, smoothing: int, over: str | None) -> str:
    """What the plot compares: the metric and its direction, the keys the runs differ in, the band, the smoothing."""
    direction = directions.better(metric)
    first = metric + (f" ({direction} is better)" if direction else "")
    keys = dict.fromkeys(override_key(item) for label, _ in groups for item in label.split() if "=" in item)
    second = [f"{len(groups)} {'settings' if over else 'runs'}" + (f" by {', '.join(keys)}" if keys else "")]
    if any(len(members) > 1 for _, members in groups):
        second.append(f"mean over {over}, band min-max")
    if smoothing > 1:
        second.append(f"smoothed: centred mean of {smoothing} logged values")
    return first + "\n" + " · ".join(second)


@reports_user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="dllm-compare", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path, help="run directories, or directories holding runs")
    parser.add_argument("--metric", action="append", help=f"metric to compare (repeatable; default {DEFAULT_METRICS})")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: the first path)")
    parser.add_argument(
        "--over",
        default=None,
        metavar="KEY",
        help="aggregate runs that differ only in KEY=... (e.g. seed): mean ± std; default seed when a setting "
        "was run with several seeds; none: one row per run",
    )
    parser.add_argument(
        "--smooth",
        type=int,
        default=1,
        metavar="N",
        help="plot the centred moving average of N logged values (default 1: raw)",
    )
    parser.add_argument(
        "--between",
        default="algorithm",
        metavar="KEY",
        help="the override whose settings are ranked against each other (default algorithm): rows that "
        "differ only in KEY=... are compared for ties and checked for fairness",
    )
    parser.add_argument(
        "--x",
        default=STEP,
        metavar="COUNTER",
        help="the curves' horizontal axis: step (default), or a running total logged with each evaluation, "
        "e.g. completions_seen (presets with several optimizer steps per rollout then line up)",
    )
    args = parser.parse_args(argv)
    if args.smooth < 1:
        raise DllmError(f"--smooth {args.smooth}: give a window of 1 (no smoothing) or more logged values")
    setup_logging()
    metrics = args.metric or list(DEFAULT_METRICS)
    runs = find_runs(args.paths)
    out = args.out or (args.paths[0] if args.paths[0].is_dir() else Path("."))
    out.mkdir(parents=True, exist_ok=True)
    over = args.over
    if over is None and repeats_over(runs, "seed"):
        over = "seed"
        print("runs repeat settings with other seeds: one row and curve per setting, over seed (--over none: each run)")
    if over and over != "none":
        groups = group_runs(runs, over)
        rows = summarise_groups(groups, metrics)
    else:
        over = None
        groups = [(" ".join(label), [run]) for run, label in zip(runs, differing_overrides(runs))]
        rows = summarise(runs, metrics)
    ranked = next((m for m in metrics if directions.better(m) is not None), None)
    if ranked is not None:
        mark_ties(rows, ranked, args.between)
    warnings = fairness_warnings(groups, args.between)
    for line in warnings:
        logger.warning("%s", line)
    table = markdown_table(rows, metrics, warnings)
    (out / "comparison.md").write_text(table)
    (out / "comparison.json").write_text(json.dumps(rows, indent=2, default=lambda spread: spread.as_json()))
    pictures = [
        m for m in metrics if plot_curves(groups, m, out / f"{m.replace('/', '_')}.png", args.smooth, over, args.x)
    ]
    print(table, end="")
    print(f"wrote {out / 'comparison.md'}, comparison.json and {len(pictures)} plot(s) to {out}")


if __name__ == "__main__":
    main()
