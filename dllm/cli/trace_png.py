"""`dllm-trace`'s pictures: the rows view (each row's prompt, reward and cells) and the summary
view (reveal step by position over many rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dllm.cli.trace_record import last_step, segments
from dllm.cli.trace_summary import position_summary

CELL_INCHES = 0.42  # one completion position; a token label of up to LABEL_CHARS fits in it at 8 pt
LABEL_CHARS = 4
UNREVEALED = "#e4e4e4"  # a position the sampler never revealed (still the mask)
ROW_UNITS = 1.9  # a row's height in cell heights: its header line, then its cells


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def render_png(record: dict[str, Any], rows: list[int], path: Path, view: str = "rows") -> None:
    """Write the `view` ("rows" or "summary") of `rows` as a PNG at `path`."""
    plt = _pyplot()
    figure = summary_figure(record, rows) if view == "summary" else rows_figure(record, rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def rows_figure(record: dict[str, Any], rows: list[int]):
    """One band per row: a header (row, reward, the prompt's end), then a cell per completion
    position coloured by the step that revealed it, the token and the step written in it; a run
    of one special token within a block is one label (`EOS ×12`) over its cells."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    width = max(len(record["tokens"][row]) for row in rows)
    last = last_step(record, rows)
    colours, norm = plt.get_cmap("Blues"), Normalize(vmin=0, vmax=max(last, 1))
    figure, axes = plt.subplots(figsize=(max(6.0, CELL_INCHES * width + 1.6), 0.62 * ROW_UNITS * len(rows) + 0.9))
    for index, row in enumerate(rows):
        top = index * ROW_UNITS
        prompt = record["prompts"][row].replace("\n", "⏎")
        room = max(12, int(width * 6) - 30)  # characters of 8-pt text across the cells, less the row and reward
        shown = prompt if len(prompt) <= room else "…" + prompt[-room + 1 :]  # its end leads into the completion
        axes.text(
            -0.5,
            top + 0.3,
            f"row {row} · reward {record['rewards'][row]:.3g} · prompt: {shown}",
            fontsize=8,
            va="center",
        )
        y = top + 1.2  # the cells' centre line
        for cell in segments(record, row):
            for position, step in zip(range(cell.start, cell.end), cell.steps):
                axes.add_patch(
                    Rectangle(
                        (position - 0.5, y - 0.5),
                        1,
                        1,
                        facecolor=colours(norm(step)) if cell.revealed else UNREVEALED,
                        alpha=1.0 if cell.scored else 0.35,
                        edgecolor="white",
                        linewidth=0.8,
                    )
                )
            centre = (cell.start + cell.end - 1) / 2
            dark = norm(min(cell.steps)) > 0.6 and cell.scored and cell.revealed
            ink = "white" if dark else "black"
            label = cell.text if cell.end - cell.start > 1 else _fit(cell.label, LABEL_CHARS)
            axes.text(centre, y - 0.14, label, ha="center", va="center", fontsize=8, family="monospace", color=ink)
            axes.text(centre, y + 0.28, cell.step_text, ha="center", va="center", fontsize=6, color=ink)
            if cell.block_starts:
                axes.plot([cell.start - 0.5] * 2, [y - 0.55, y + 0.55], color="#c33", linewidth=2)
    axes.set_xlim(-0.6, width - 0.4)
    axes.set_ylim(ROW_UNITS * len(rows) - 0.1, 0)
    axes.set_yticks([])
    axes.set_xticks(range(0, width, 4 if width > 16 else 1))
    axes.set_xlabel("completion position")
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    axes.set_title(
        "Decoding order: the number is the step that revealed the token\n"
        "faded: after the first EOS; grey, —: never revealed; red: block boundary",
        fontsize=8,
    )
    bar = figure.colorbar(
        ScalarMappable(norm=norm, cmap=colours), ax=axes, label="step revealed", fraction=0.03, pad=0.01
    )
    bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    return figure


def summary_figure(record: dict[str, Any], rows: list[int]):
    """Two panels over the completion positions: the step that revealed each, averaged over the
    rows that revealed it, with their min-max band, block boundaries dashed; and the share of rows
    that revealed each position and that score it (up to their first EOS)."""
    plt = _pyplot()
    summary = position_summary(record, rows)
    positions = list(range(len(summary.mean)))
    nan = float("nan")  # a position no row revealed: a gap in the curve
    mean, low, high = (
        [nan if v is None else v for v in values] for values in (summary.mean, summary.low, summary.high)
    )
    figure, (steps_axes, share_axes) = plt.subplots(
        2, 1, sharex=True, figsize=(max(7.0, 0.16 * len(positions) + 2), 5.2), height_ratios=(3, 1.3)
    )
    steps_axes.fill_between(positions, low, high, step="mid", alpha=0.2, label="min-max over rows")
    steps_axes.plot(positions, mean, marker="o", markersize=3, label="mean over the rows that revealed it")
    steps_axes.set_ylabel("step revealed")
    steps_axes.set_ylim(bottom=0)
    steps_axes.legend(fontsize=7, loc="best")
    share_axes.bar(positions, summary.revealed, width=0.9, color="#c8c8c8", label="revealed")
    share_axes.bar(positions, summary.scored, width=0.6, color="#555", label="scored (to the first EOS)")
    share_axes.set_ylim(0, 1)
    share_axes.set_ylabel("share of rows", fontsize=8)
    share_axes.set_xlabel("completion position")
    share_axes.legend(fontsize=7, loc="upper right")
    for axes in (steps_axes, share_axes):
        axes.grid(alpha=0.3)
        for edge in sorted(summary.edges):
            axes.axvline(edge - 0.5, color="#c33", linestyle="--", linewidth=1)
    if not record.get("block_size"):
        blocks = "no blocks"
    elif summary.edges:
        blocks = "dashed: block boundaries"
    else:
        blocks = "block boundaries differ by row, not drawn"
    steps_axes.set_title(
        f"Decoding order, {len(rows)} rows (mean reward {summary.mean_reward:.3g}): the step that revealed each "
        f"position\nbelow: share of rows that revealed it and that score it; {blocks}",
        fontsize=9,
    )
    figure.tight_layout()
    return figure
