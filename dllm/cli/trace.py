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
from pathlib import Path

from dllm.cli.common import reports_user_errors
from dllm.cli.trace_record import last_step, load_trace, segments, token_label
from dllm.errors import DllmError
from dllm.run_files import CHECKPOINT_DIR, KEPT_DIR, TRACE_PAGE

SUMMARY_ABOVE = 16  # more rows than this: the summary view by default (96 rows on one page read as noise)

# What the views read of a saved rollout, importable from here as from `dllm.cli.trace_record`.
__all__ = ["default_out", "last_step", "load_trace", "main", "segments", "token_label"]


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
