"""`dllm-trace`'s self-contained HTML page (inline CSS, no scripts): the rows view and the summary view."""

from __future__ import annotations

import html
from typing import Any

from dllm.cli.trace_record import last_step, segments
from dllm.cli.trace_summary import position_summary

STYLE = (
    "body{font-family:sans-serif;margin:1.5em} .row{margin:1.2em 0} .prompt{color:#555;margin-bottom:.3em}"
    " .cells{display:flex;flex-wrap:wrap;gap:2px} .cell{min-width:1.6em;text-align:center;border-radius:3px;"
    "padding:2px 3px;font-family:monospace} .step{font-size:.65em;display:block} .dim{opacity:.35}"
    " .edge{border-left:2px solid #c33;margin-left:2px}"
)


UNREVEALED = "#e4e4e4"  # a position the sampler never revealed (still the mask)


def _shade(step: float, last: int) -> str:
    """Light (early) to dark (late) blue."""
    fraction = min(step / max(last, 1), 1.0)
    lightness = 92 - 55 * fraction
    return f"hsl(215, 70%, {lightness:.0f}%)"


def _page(title: str, intro: str, body: list[str]) -> str:
    head = f"<!doctype html><html><head><meta charset='utf-8'><title>dllm-trace</title><style>{STYLE}</style></head>"
    return f"{head}<body><h2>{title}</h2><p>{intro}</p>{''.join(body)}</body></html>"


def render_html(record: dict[str, Any], rows: list[int], view: str = "rows") -> str:
    """The page for `rows` of a saved rollout: every row's cells ("rows"), or the reveal step by
    position averaged over the rows ("summary")."""
    return summary_page(record, rows) if view == "summary" else rows_page(record, rows)


def rows_page(record: dict[str, Any], rows: list[int]) -> str:
    last = last_step(record, rows)
    body = []
    for row in rows:
        body.append(
            f"<div class='row'><div class='prompt'>row {row} · reward {record['rewards'][row]:.3g} · prompt "
            f"<code>{html.escape(record['prompts'][row])}</code></div><div class='cells'>"
        )
        for cell in segments(record, row):
            classes = ["cell"] + ([] if cell.scored else ["dim"]) + (["edge"] if cell.block_starts else [])
            one = cell.end - cell.start == 1
            span = f"position {cell.start}" if one else f"positions {cell.start}-{cell.end - 1}"
            steps = f"step{'' if one else 's'} {' '.join(map(str, cell.steps))}" if cell.revealed else "never revealed"
            where = f"{span}, {steps}"
            shade = _shade(min(cell.steps), last) if cell.revealed else UNREVEALED
            body.append(
                f"<span class='{' '.join(classes)}' style='background:{shade}' "
                f"title='{where}'>{html.escape(cell.text)}<span class='step'>{cell.step_text}</span></span>"
            )
        body.append("</div></div>")
    intro = (
        "Each completion token, coloured by the step that revealed it (light = early); the number is the step. "
        "Faded: after the first EOS (not scored). Grey, —: never revealed (still the mask). Red edges: block "
        "boundaries. A run of one special token (EOS ×12) is one cell with the steps that revealed it."
    )
    return _page("Decoding order", intro, body)


def summary_page(record: dict[str, Any], rows: list[int]) -> str:
    summary = position_summary(record, rows)
    edges = summary.edges
    last = last_step(record, rows)
    caption = "mean step that revealed the position (hover: min, max) · under it: share of rows scored there"
    body = [f"<div class='row'><div class='prompt'>{caption}</div><div class='cells'>"]
    for position, mean in enumerate(summary.mean):
        edge = " edge" if position in edges else ""
        share, revealed = summary.scored[position], summary.revealed[position]
        if mean is None:
            shade, text, where = UNREVEALED, "—", "never revealed"
        else:
            shade, text = _shade(mean, last), f"{mean:.1f}"
            where = f"mean step {mean:.2f}, min {summary.low[position]}, max {summary.high[position]}"
        body.append(
            f"<span class='cell{edge}' style='background:{shade}' title='position {position}, {where}, revealed in "
            f"{revealed:.0%} and scored in {share:.0%} of rows'>{text}<span class='step'>{share:.0%}</span></span>"
        )
    body.append("</div></div>")
    edge_note = (
        "Red edges: block boundaries."
        if edges or not record.get("block_size")
        else "Block boundaries differ by row (prompt lengths), so none are drawn."
    )
    intro = (
        f"{len(rows)} rows, mean reward {summary.mean_reward:.3g}. Each completion position: the step that revealed "
        f"it, averaged over the rows that revealed it (light = early; grey, —: no row did), and under it the share "
        f"of rows still scored there (up to their first EOS). {edge_note} dllm-trace --view rows shows every row."
    )
    return _page("Decoding order by position", intro, body)
