import pytest
import torch

from dllm.algorithms.rollout import save_rollout
from dllm.cli.trace import main, render_html
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
