import pytest
import torch

from dllm.algorithms.rollout import save_rollout
from dllm.cli.trace import default_out, main, segments, token_label
from dllm.cli.trace_html import render_html
from dllm.cli.trace_summary import position_summary
from dllm.errors import DllmError
from dllm.samplers.sdar import SDARSampler
from tests.unit.algorithms.rl_helpers import sampled_rollout, tiny


@pytest.fixture
def saved(tmp_path, tokenizer):
    rollout = sampled_rollout(tiny("sdar_tiny"), SDARSampler(denoising_steps=2, stop_at_eos=False), tokenizer)
    rollout.rewards = torch.tensor([1.0, 0.0])
    return save_rollout(rollout, tokenizer, tmp_path / "rollout.pt"), rollout


def test_the_page_shows_every_token_with_the_step_that_revealed_it(saved):
    path, rollout = saved
    record = torch.load(path, weights_only=False)
    page = render_html(record, [0, 1])
    assert page.startswith("<!doctype html>") and "<script" not in page
    for row in range(2):
        for position, step in enumerate(rollout.step_map[row].tolist()):
            assert f"title='position {position}, step {step}'" in page
    # blocks of 4 from each row's position 0: the 7-token prompt's 8 tokens cross boundaries before
    # tokens 1 and 5, the 4-token prompt's before token 4
    assert record["prompt_phases"] == [3, 0]
    assert page.count("class='cell edge'") + page.count("class='cell dim edge'") == 2 + 1


def test_the_command_writes_html_and_png(saved, capsys):
    path, _ = saved
    main([str(path)])
    assert path.with_suffix(".html").stat().st_size > 500
    main([str(path), "--rows", "1", "--out", str(path.with_suffix(".png"))])
    assert path.with_suffix(".png").stat().st_size > 1000
    with pytest.raises(SystemExit):
        main([str(path), "--rows", "5"])
    assert "rows [5] do not exist: the rollout has rows 0..1" in capsys.readouterr().err


def test_a_file_that_is_not_a_rollout_is_refused(tmp_path):
    from dllm.cli.trace import load_trace

    (tmp_path / "x.pt").write_bytes(b"not a tensor file")
    with pytest.raises(DllmError, match="is not a saved rollout"):
        load_trace(tmp_path / "x.pt")


def hand_made(rows=2, block_size=8, phases=None, width=14):
    """Rows of a trained model's shape: two digits, then EOS to the end (the first EOS scored);
    row r revealed position p at step (p + r) % width."""
    tokens = ["1", "2"] + ["<|eos|>"] * (width - 2)
    return {
        "prompts": [f"prompt {r}" for r in range(rows)],
        "tokens": [list(tokens) for _ in range(rows)],
        "step_map": [[(p + r) % width for p in range(width)] for r in range(rows)],
        "scored": [[p <= 2 for p in range(width)] for _ in range(rows)],
        "rewards": [float(r % 2) for r in range(rows)],
        "block_size": block_size,
        "prompt_phases": phases if phases is not None else [0] * rows,
    }


def test_special_tokens_get_short_labels():
    assert [token_label(t) for t in ("<|eos|>", "<pad>", "<|mask|>", " ", "\n", "7")] == [
        "EOS",
        "PAD",
        "MASK",
        "␣",
        "⏎",
        "7",
    ]


def test_a_run_of_eos_is_one_cell_per_block_with_its_steps():
    cells = segments(hand_made(), 0)
    assert [(c.start, c.end, c.text, c.scored, c.block_starts) for c in cells] == [
        (0, 1, "1", True, False),
        (1, 2, "2", True, False),
        (2, 3, "EOS", True, False),  # the first EOS is scored: a cell of its own
        (3, 8, "EOS ×5", False, False),
        (8, 14, "EOS ×6", False, True),  # split at the block boundary, which stays visible
    ]
    assert cells[3].step_text == "3–7" and cells[0].step_text == "0"
    assert [c.text for c in segments(hand_made(block_size=None), 0)][-1] == "EOS ×11"  # full attention: one run


def test_repeated_ordinary_tokens_stay_separate():
    record = hand_made(block_size=None)
    record["tokens"][0] = ["0"] * 14
    assert len(segments(record, 0)) == 14


def test_the_picture_labels_each_eos_run_once_with_prompt_reward_steps_and_boundaries():
    from dllm.cli.trace_png import rows_figure

    figure = rows_figure(hand_made(rows=2), [0, 1])
    axes = figure.axes[0]
    texts = [t.get_text() for t in axes.texts]
    assert texts.count("EOS ×5") == 2 and texts.count("EOS ×6") == 2 and not any("<|" in t for t in texts)
    assert "row 1 · reward 1 · prompt: prompt 1" in texts
    assert "3–7" in texts and "4–8" in texts  # row 0's and row 1's steps of positions 3-7
    boundaries = [line for line in axes.get_lines() if line.get_color() == "#c33"]
    assert [line.get_xdata()[0] for line in boundaries] == [7.5, 7.5]
    assert len(axes.patches) == 2 * 14  # a coloured cell per position, collapsed or not


def test_the_summary_averages_the_reveal_step_by_position():
    record = hand_made(rows=3, width=4, block_size=2)
    record["step_map"] = [[0, 1, 2, 3], [2, 1, 0, 3], [1, 1, 1, 0]]
    summary = position_summary(record, [0, 1, 2])
    assert summary.mean == [1.0, 1.0, 1.0, 2.0] and summary.low == [0, 1, 0, 0] and summary.high == [2, 1, 2, 3]
    assert summary.scored == [1.0, 1.0, 1.0, 0.0] and summary.edges == {2} and summary.mean_reward == 1 / 3
    assert summary.revealed == [1.0] * 4
    record["prompt_phases"] = [0, 1, 0]  # rows whose blocks start elsewhere: no shared boundaries
    assert position_summary(record, [0, 1, 2]).edges == set()


def test_the_summary_picture(tmp_path):
    from dllm.cli.trace_png import summary_figure

    figure = summary_figure(hand_made(rows=20), list(range(20)))
    steps_axes, scored_axes = figure.axes
    assert "Decoding order, 20 rows (mean reward 0.5)" in steps_axes.get_title()
    # position p over rows r = 0..19: (p + r) % 14 is 0..13 once (sum 91), then p..p+5 (p = 0: 15)
    assert list(steps_axes.get_lines()[0].get_ydata()[:3]) == pytest.approx([106 / 20, 112 / 20, 118 / 20])
    bars = [bar.get_height() for bar in scored_axes.patches]  # 14 revealed, then 14 scored
    assert scored_axes.get_ylim() == (0.0, 1.0) and bars[:2] == [1, 1] and bars[14:18] == [1, 1, 1, 0]
    assert [line.get_xdata()[0] for line in steps_axes.get_lines()[1:]] == [7.5]  # the block boundary


def test_many_rows_get_the_summary_view_by_default(tmp_path, capsys):
    for rows, title in ((16, "<h2>Decoding order</h2>"), (17, "<h2>Decoding order by position</h2>")):
        torch.save(hand_made(rows=rows), tmp_path / "rollout.pt")
        main([str(tmp_path / "rollout.pt"), "--out", str(tmp_path / f"{rows}.html")])
        assert title in (tmp_path / f"{rows}.html").read_text()
    assert "summary view of 17 rows; --view rows shows each" in capsys.readouterr().out
    main([str(tmp_path / "rollout.pt"), "--view", "rows", "--out", str(tmp_path / "all.html")])
    assert (tmp_path / "all.html").read_text().count("class='row'") == 17


def test_the_page_goes_next_to_the_run_not_into_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    for folder in (run / "checkpoint", run / "checkpoints" / "main-000010"):
        folder.mkdir(parents=True)
        torch.save(hand_made(), folder / "rollout.pt")
    assert default_out(run / "checkpoint" / "rollout.pt") == (run / "trace.html").resolve()
    assert default_out(run / "checkpoints" / "main-000010" / "rollout.pt") == (run / "trace-main-000010.html").resolve()
    assert default_out(tmp_path / "saved.pt") == tmp_path / "saved.html"
    main([str(run / "checkpoint" / "rollout.pt")])
    assert (run / "trace.html").is_file() and sorted(p.name for p in (run / "checkpoint").iterdir()) == ["rollout.pt"]
    main([str(run / "checkpoint" / "rollout.pt"), "--out", str(tmp_path / "elsewhere" / "t.html")])
    assert (tmp_path / "elsewhere" / "t.html").is_file()


def test_a_position_still_masked_shows_no_step_and_leaves_the_means_and_the_colour_scale():
    from dllm.cli.trace import last_step

    record = hand_made(rows=2, width=4, block_size=None)
    record["mask_token"] = "<|mask|>"
    record["tokens"][1] = ["1", "<|eos|>", "<|mask|>", "<|mask|>"]  # the sampler stopped before 2 and 3
    record["step_map"] = [[0, 1, 2, 3], [1, 0, 9, 9]]  # never revealed: a step after the last
    record["scored"][1] = [True, True, False, False]
    cells = segments(record, 1)
    assert [(c.text, c.step_text, c.revealed) for c in cells] == [
        ("1", "1", True),
        ("EOS", "0", True),
        ("MASK ×2", "—", False),
    ]
    assert last_step(record, [0, 1]) == 3
    summary = position_summary(record, [0, 1])
    assert summary.mean == [0.5, 0.5, 2.0, 3.0] and summary.revealed == [1.0, 1.0, 0.5, 0.5]
    del record["mask_token"]  # a record saved before the mask was recorded: known by its name
    assert not segments(record, 1)[-1].revealed
    record["tokens"][0] = ["<|mask|>"] * 4
    assert position_summary(record, [0, 1]).mean[2:] == [None, None]


def test_a_rollout_under_the_shipped_defaults_is_drawn_position_for_position(tmp_path, tokenizer):
    sampler = SDARSampler(denoising_steps=2)  # stop_at_eos on, as shipped
    prompts = ("12+345=", "7+8=", "1+10=")  # odd lengths: each row's blocks start elsewhere
    rollout = sampled_rollout(tiny("sdar_tiny"), sampler, tokenizer, prompts, 12, eos_id=tokenizer.eos_token_id)
    path = save_rollout(rollout, tokenizer, tmp_path / "run" / "checkpoint" / "rollout.pt")
    record = torch.load(path, weights_only=False)
    for row in range(3):
        cells = segments(record, row)
        assert [p for cell in cells for p in range(cell.start, cell.end)] == list(range(12))
        for cell in cells:
            assert cell.steps == rollout.step_map[row, cell.start : cell.end].tolist()
            assert [cell.scored] * (cell.end - cell.start) == rollout.scored[row, cell.start : cell.end].tolist()
            assert cell.revealed == (rollout.completions[row, cell.start] != tokenizer.mask_token_id).item()
    main([str(path), "--out", str(tmp_path / "rows.png")])
    main([str(path)])
    assert (tmp_path / "rows.png").stat().st_size > 1000 and (tmp_path / "run" / "trace.html").is_file()


def test_a_model_that_stops_early_leaves_masks_drawn_as_one_unrevealed_cell_per_block(tmp_path, tokenizer):
    model = tiny("sdar_tiny")
    eos = tokenizer.eos_token_id

    def favour_eos(module, inputs, logits):  # EOS wins from the prompts' 4th token on
        logits = logits.clone()
        logits[..., 3:, eos] += 30
        return logits

    model.lm_head.register_forward_hook(favour_eos)
    prompts = ("12+345=", "7+8=")  # blocks of 4 from the first prompt token: phases 3 and 0
    rollout = sampled_rollout(model, SDARSampler(denoising_steps=2), tokenizer, prompts, 12, eos_id=eos)
    record = torch.load(save_rollout(rollout, tokenizer, tmp_path / "rollout.pt"), weights_only=False)
    cells = [(c.text, c.step_text, c.scored, c.block_starts) for c in segments(record, 0)]
    assert cells == [
        ("EOS", "0", True, False),
        ("MASK ×4", "—", False, True),  # stop_at_eos: never revealed, one cell per block
        ("MASK ×4", "—", False, True),
        ("MASK ×3", "—", False, True),
    ]
    assert [c.text for c in segments(record, 1)][-3:] == ["EOS", "MASK ×4", "MASK ×4"]
    page = render_html(record, [0, 1])
    assert "title='positions 1-4, never revealed'>MASK ×4<span class='step'>—</span>" in page
