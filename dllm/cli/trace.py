"""`dllm-trace`: show a rollout's decoding order — which token was revealed at which step.

dllm-trace outputs/RUN/checkpoint/rollout.pt                 # as outputs/RUN/trace.html
dllm-trace rollout.pt --rows 0 3 --out trace.png             # two rows, as a picture
dllm-trace rollout.pt --view summary --out summary.png       # every row, summed up in one plot

Input: a rollout saved by `dllm.algorithms.rollout.save_rollout` (an RL run keeps its latest
rollout in its checkpoint). The rows view shows each row's prompt and reward, then each
completion token as a cell coloured by the step that revealed it (early light, late dark) with
the step number under it; red lines mark block boundaries, faded cells come after the first
EOS (not scored), grey cells without a step were never revealed (still the mask), and a run of
one special token (EOS, pad, mask) within a block is one cell, `EOS ×12`, with the steps that
revealed it. The summary view (default for more than 16 rows) shows per completion position the
step that revealed it, averaged over the rows that revealed it (with their min-max), and the
shares of rows that revealed it and that score it (up to their first EOS).
The page goes next to the run (RUN/trace.html; a kept checkpoints/LABEL/ gives
RUN/trace-LABEL.html), never into the checkpoint, which the next save replaces; `--out` picks
another place. The HTML page is self-contained (inline CSS, no scripts); the PNG needs matplotlib.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dllm.cli.common import reports_user_errors
from dllm.errors import DllmError
from dllm.run_files import CHECKPOINT_DIR, KEPT_DIR, TRACE_PAGE

REQUIRED = ("prompts", "tokens", "step_map", "rewards")
SUMMARY_ABOVE = 16  # more rows than this: the summary view by default (96 rows on one page read as noise)
SPECIAL = re.compile(r"<\|?/?([^<>|]+)\|?>")  # <|eos|>, <pad>, </s>


def load_trace(path: Path) -> dict[str, Any]:
    """A saved rollout, checked to hold what a trace needs."""
    if not path.is_file():
        raise DllmError(f"{str(path)!r} is not a file; give a rollout saved by an RL run (RUN/checkpoint/rollout.pt)")
    try:
        record = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise DllmError(f"{str(path)!r} is not a saved rollout ({type(exc).__name__}: {exc})") from None
    missing = [key for key in REQUIRED if not isinstance(record, dict) or key not in record]
    if missing:
        raise DllmError(f"{str(path)!r} lacks {', '.join(missing)}: save it with dllm.algorithms.rollout.save_rollout")
    return record


def token_label(token: str) -> str:
    """What a cell shows for a token: `EOS` for `<|eos|>`, ␣ for a space, ⏎ for a newline."""
    special = SPECIAL.fullmatch(token)
    if special:
        return special.group(1).upper()
    if not token.strip():
        return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥") or "∅"
    return token


def never_revealed(record: dict[str, Any], token: str) -> bool:
    """True for a position still reading the mask (the sampler stopped before revealing it):
    the record's `mask_token`, or for older records a special token named like *mask*."""
    if "mask_token" in record:
        return token == record["mask_token"]
    special = SPECIAL.fullmatch(token)
    return special is not None and "mask" in special.group(1).lower()


@dataclass
class Segment:
    """Completion positions [start, end) shown as one cell: one token, or a run of one special token."""

    start: int
    end: int
    label: str
    steps: list[int]
    scored: bool
    block_starts: bool  # a block boundary lies before `start`
    revealed: bool = True  # False: still the mask, its step a placeholder

    @property
    def text(self) -> str:
        return self.label if self.end - self.start == 1 else f"{self.label} ×{self.end - self.start}"

    @property
    def step_text(self) -> str:
        if not self.revealed:
            return "—"
        low, high = min(self.steps), max(self.steps)
        return str(low) if low == high else f"{low}–{high}"


def block_edges(record: dict[str, Any], row: int) -> set[int]:
    """Completion positions (after the first) where a block begins; blocks count from the row's
    first prompt token, so its prompt's tail fills the first one's start."""
    block = record.get("block_size")
    if not block:
        return set()
    phase = record["prompt_phases"][row] if "prompt_phases" in record else 0
    return {position for position in range(1, len(record["tokens"][row])) if (position + phase) % block == 0}


def segments(record: dict[str, Any], row: int) -> list[Segment]:
    """Row `row`'s completion as cells: each token alone, except that a run of one special token
    (EOS, pad, mask) with the same scoring is one cell — split at block boundaries, so each
    boundary stays visible."""
    tokens, steps = record["tokens"][row], record["step_map"][row]
    scored = record["scored"][row] if "scored" in record else [True] * len(steps)
    edges = block_edges(record, row)
    cells: list[Segment] = []
    for position, (token, step) in enumerate(zip(tokens, steps)):
        last = cells[-1] if cells else None
        if (
            last is not None
            and SPECIAL.fullmatch(token)
            and tokens[last.start] == token
            and last.scored == bool(scored[position])
            and position not in edges
        ):
            last.end, last.steps = position + 1, last.steps + [step]
            continue
        label, flag, edge = token_label(token), bool(scored[position]), position in edges
        cells.append(Segment(position, position + 1, label, [step], flag, edge, not never_revealed(record, token)))
    return cells


def default_out(rollout: Path) -> Path:
    """Where the page goes without `--out`: next to the run, not into a checkpoint folder (the
    next save replaces it): RUN/trace.html for RUN/checkpoint/rollout.pt, RUN/trace-LABEL.html
    for a kept RUN/checkpoints/LABEL/rollout.pt, else beside the rollout file."""
    folder = rollout.resolve().parent
    if folder.name == CHECKPOINT_DIR:
        return folder.parent / TRACE_PAGE
    if folder.parent.name == KEPT_DIR:
        return folder.parent.parent / f"trace-{folder.name}.html"
    return rollout.with_suffix(".html")


def last_step(record: dict[str, Any], rows: list[int]) -> int:
    """The latest step that revealed a token of `rows`: one colour scale for all of them."""
    steps = [
        step
        for row in rows
        for token, step in zip(record["tokens"][row], record["step_map"][row])
        if not never_revealed(record, token)
    ]
    return max(steps, default=0)


@reports_user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="dllm-trace", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("rollout", type=Path, help="a saved rollout (RUN/checkpoint/rollout.pt)")
    parser.add_argument("--rows", type=int, nargs="*", default=None, help="rows to show (default: all)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output .html or .png (default: RUN/trace.html, next to the run)"
    )
    parser.add_argument(
        "--view",
        choices=("auto", "rows", "summary"),
        default="auto",
        help=f"rows: every row's tokens; summary: reveal step by position over the rows; "
        f"auto (default): summary for more than {SUMMARY_ABOVE} rows",
    )
    args = parser.parse_args(argv)
    record = load_trace(args.rollout)
    count = len(record["tokens"])
    rows = args.rows if args.rows is not None else list(range(count))
    bad = [row for row in rows if not 0 <= row < count]
    if bad:
        raise DllmError(f"rows {bad} do not exist: the rollout has rows 0..{count - 1}")
    if not rows:
        raise DllmError("--rows names no row: give row numbers, or leave --rows out for every row")
    view = args.view if args.view != "auto" else ("summary" if len(rows) > SUMMARY_ABOVE else "rows")
    out = args.out or default_out(args.rollout)
    if out.suffix == ".png":
        from dllm.cli.trace_png import render_png

        render_png(record, rows, out, view)
    elif out.suffix == ".html":
        from dllm.cli.trace_html import render_html

        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_html(record, rows, view))
    else:
        raise DllmError(f"--out {str(out)!r}: write a .html page or a .png picture")
    note = f" (the {view} view of {len(rows)} rows; --view rows shows each)" if view == "summary" else ""
    print(f"wrote {out}{note}")


if __name__ == "__main__":
    main()
