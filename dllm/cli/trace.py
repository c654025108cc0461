"""`dllm-trace`: show a rollout's decoding order — which token was revealed at which step.

dllm-trace outputs/RUN/checkpoint/rollout.pt                 # every row, as RUN/.../rollout.html
dllm-trace rollout.pt --rows 0 3 --out trace.png             # two rows, as a picture

Input: a rollout saved by `dllm.algorithms.rollout.save_rollout` (an RL run keeps its latest
rollout in its checkpoint). Each completion token is a cell coloured by the step that revealed
it (early light, late dark), with the step number under it; block boundaries are marked.
The HTML page is self-contained (inline CSS, no scripts); the PNG needs matplotlib.
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path
from typing import Any

import torch

from dllm.cli.common import reports_user_errors
from dllm.errors import DllmError

REQUIRED = ("prompts", "tokens", "step_map", "rewards")


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


def _shade(step: int, last: int) -> str:
    """Light (early) to dark (late) blue."""
    fraction = step / max(last, 1)
    lightness = 92 - 55 * fraction
    return f"hsl(215, 70%, {lightness:.0f}%)"


def render_html(record: dict[str, Any], rows: list[int]) -> str:
    block = record.get("block_size")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>dllm-trace</title><style>",
        "body{font-family:sans-serif;margin:1.5em} .row{margin:1.2em 0} .prompt{color:#555;margin-bottom:.3em}",
        ".cells{display:flex;flex-wrap:wrap;gap:2px} .cell{min-width:1.6em;text-align:center;border-radius:3px;",
        "padding:2px 3px;font-family:monospace} .step{font-size:.65em;display:block} .dim{opacity:.35}",
        ".edge{border-left:2px solid #c33;margin-left:2px}</style></head><body>",
        "<h2>Decoding order</h2><p>Each completion token, coloured by the step that revealed it (light = early);",
        " the number is the step. Faded: after the first EOS (not scored). Red edges: block boundaries.</p>",
    ]
    for row in rows:
        steps = record["step_map"][row]
        scored = record["scored"][row] if "scored" in record else [True] * len(steps)
        last = max(steps) if steps else 0
        parts.append(
            f"<div class='row'><div class='prompt'>row {row} · reward {record['rewards'][row]:.3g} · prompt "
            f"<code>{html.escape(record['prompts'][row])}</code></div><div class='cells'>"
        )
        # blocks count from the row's first prompt token: its prompt's tail fills the first one's start
        phase = record["prompt_phases"][row] if "prompt_phases" in record else 0
        for position, (token, step) in enumerate(zip(record["tokens"][row], steps)):
            classes = ["cell"] + ([] if scored[position] else ["dim"])
            if block and position and (position + phase) % block == 0:
                classes.append("edge")
            text = html.escape(token if token.strip() else repr(token)[1:-1] or "␣")
            parts.append(
                f"<span class='{' '.join(classes)}' style='background:{_shade(step, last)}' "
                f"title='position {position}, step {step}'>{text}<span class='step'>{step}</span></span>"
            )
        parts.append("</div></div>")
    parts.append("</body></html>")
    return "".join(parts)


def render_png(record: dict[str, Any], rows: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(len(record["tokens"][row]) for row in rows)
    figure, axes = plt.subplots(figsize=(max(4, 0.45 * width), 0.6 * len(rows) + 1))
    grid = [[float("nan")] * width for _ in rows]
    for y, row in enumerate(rows):
        for x, step in enumerate(record["step_map"][row]):
            grid[y][x] = step
    image = axes.imshow(grid, cmap="Blues", aspect="auto")
    for y, row in enumerate(rows):
        for x, token in enumerate(record["tokens"][row]):
            axes.text(x, y, token.strip() or "␣", ha="center", va="center", fontsize=8, family="monospace")
    axes.set_yticks(range(len(rows)), [f"row {row}" for row in rows])
    axes.set_xlabel("completion position")
    figure.colorbar(image, ax=axes, label="step revealed")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


@reports_user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="dllm-trace", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("rollout", type=Path, help="a saved rollout (RUN/checkpoint/rollout.pt)")
    parser.add_argument("--rows", type=int, nargs="*", default=None, help="rows to show (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="output .html or .png (default: next to the rollout)")
    args = parser.parse_args(argv)
    record = load_trace(args.rollout)
    count = len(record["tokens"])
    rows = args.rows if args.rows is not None else list(range(count))
    bad = [row for row in rows if not 0 <= row < count]
    if bad:
        raise DllmError(f"rows {bad} do not exist: the rollout has rows 0..{count - 1}")
    out = args.out or args.rollout.with_suffix(".html")
    if out.suffix == ".png":
        render_png(record, rows, out)
    elif out.suffix == ".html":
        out.write_text(render_html(record, rows))
    else:
        raise DllmError(f"--out {str(out)!r}: write a .html page or a .png picture")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
