"""`dllm-compare`: turn a sweep (or any set of runs) into an ablation table and curves.

dllm-compare multirun/2026-11-25/10-00-00             # every run under a sweep directory
dllm-compare outputs/a outputs/b --metric eval/accuracy --out report/
dllm-compare multirun/... --over seed                   # one row per setting: mean ± std over seeds

For each run (a directory with `metrics.jsonl`): the command-line overrides that differ
between runs (from Hydra's `.hydra/overrides.yaml`, else the run's name), the final and best
value of each chosen metric, its steps and wall time. Writes `comparison.md` (the table),
`comparison.json`, and one PNG per metric with a curve per run. With `--over KEY`, runs that
differ only in `KEY=...` (several seeds of one setting) make one row: the mean ± sample standard
deviation of each number and the count of runs, and one curve: the mean at the steps every run
logged, with the runs' min-max band.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dllm.cli.common import reports_user_errors, setup_logging
from dllm.errors import DllmError
from dllm.loggers import json_record

logger = logging.getLogger("dllm.compare")

DEFAULT_METRICS = ("eval/accuracy", "reward", "loss")


@dataclass
class Run:
    """One run's identity (its overrides) and its logged records."""

    path: Path
    overrides: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)

    def series(self, metric: str) -> list[tuple[int, float]]:
        """(global step, value) of every record holding `metric`; stages are laid end to end."""
        points, offset, last_stage, last_step = [], 0, None, 0
        for record in self.records:
            stage = record.get("stage")
            if stage != last_stage and last_stage is not None:
                offset += last_step
            last_stage, last_step = stage, record.get("step", 0)
            if metric in record:
                points.append((offset + record.get("step", 0), float(record[metric])))
        return points

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
        found += [p.parent for p in sorted(path.rglob("metrics.jsonl"))]
    if not found:
        raise DllmError(f"no runs (directories with metrics.jsonl) under {', '.join(map(str, paths))}")
    runs = []
    for directory in dict.fromkeys(found):
        overrides_file = directory / ".hydra" / "overrides.yaml"
        overrides = _read_overrides(overrides_file) if overrides_file.is_file() else [directory.name]
        runs.append(Run(directory, overrides, read_records(directory / "metrics.jsonl")))
    return runs


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
    from omegaconf import OmegaConf

    return [str(item) for item in OmegaConf.load(path)]


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
            row[f"{metric} best"] = max(v for _, v in series) if series else None
        row["steps"] = max((step for step, _ in run.series("step_time")), default=0)
        row["wall time (s)"] = run.wall_time()
        rows.append(row)
    return rows


def group_runs(runs: list[Run], over: str) -> list[tuple[str, list[Run]]]:
    """Runs grouped by their differing overrides less `over=...` (e.g. the seeds of one
    setting), in order of first appearance: (label, runs)."""
    groups: dict[str, list[Run]] = {}
    for run, label in zip(runs, differing_overrides(runs)):
        kept = [item for item in label if item.split("=", 1)[0].lstrip("+~") != over]
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


def mean_series(members: list[Run], metric: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """(steps, mean, min, max) of `metric` over `members` at the steps every one of them logged."""
    tables = [dict(run.series(metric)) for run in members]
    steps = sorted(set.intersection(*(set(table) for table in tables))) if tables else []
    columns = [[table[step] for table in tables] for step in steps]
    return steps, [sum(c) / len(c) for c in columns], [min(c) for c in columns], [max(c) for c in columns]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    columns = [key for key in rows[0] if key != "path"]

    def cell(value: Any) -> str:
        if value is None:
            return "—"
        return f"{value:.4g}" if isinstance(value, float) else str(value)  # Spread prints mean ± std

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_curves(groups: list[tuple[str, list[Run]]], metric: str, path: Path) -> bool:
    """A PNG with `metric` against the step for every group of runs that logged it (the mean,
    with the min-max band where a group holds several runs); False if none did."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    plotted = False
    for label, members in groups:
        steps, mean, low, high = mean_series(members, metric)
        if steps:
            (line,) = axes.plot(steps, mean, marker="o" if len(steps) < 30 else None, markersize=3, label=label)
            if len(members) > 1:
                axes.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
            plotted = True
    if plotted:
        axes.set_xlabel("optimizer step (stages end to end)")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
    plt.close(figure)
    return plotted


@reports_user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="dllm-compare", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path, help="run directories, or directories holding runs")
    parser.add_argument("--metric", action="append", help=f"metric to compare (repeatable; default {DEFAULT_METRICS})")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: the first path)")
    parser.add_argument(
        "--over", default=None, metavar="KEY", help="aggregate runs that differ only in KEY=... (e.g. seed): mean ± std"
    )
    args = parser.parse_args(argv)
    setup_logging()
    metrics = args.metric or list(DEFAULT_METRICS)
    runs = find_runs(args.paths)
    out = args.out or (args.paths[0] if args.paths[0].is_dir() else Path("."))
    out.mkdir(parents=True, exist_ok=True)
    if args.over:
        groups = group_runs(runs, args.over)
        rows = summarise_groups(groups, metrics)
    else:
        groups = [(" ".join(label), [run]) for run, label in zip(runs, differing_overrides(runs))]
        rows = summarise(runs, metrics)
    table = markdown_table(rows)
    (out / "comparison.md").write_text(table)
    (out / "comparison.json").write_text(json.dumps(rows, indent=2, default=lambda spread: spread.as_json()))
    pictures = [m for m in metrics if plot_curves(groups, m, out / f"{m.replace('/', '_')}.png")]
    print(table, end="")
    print(f"wrote {out / 'comparison.md'}, comparison.json and {len(pictures)} plot(s) to {out}")


if __name__ == "__main__":
    main()
