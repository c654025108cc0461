from types import SimpleNamespace

import pytest
import torch

import dllm
from dllm.models.base import align_shifted, logits_from, run_model


def test_align_shifted_reads_the_position_before_each_token():
    logits = torch.arange(5.0)[None, :, None]  # position i's logits hold i
    assert align_shifted(logits).flatten().tolist() == [0, 0, 1, 2, 3]  # token 0 reads position 0
    assert align_shifted(logits, 2).flatten().tolist() == [1, 2, 3]  # tokens 2..4, a view
    assert align_shifted(logits, 2).data_ptr() == logits[:, 1:].data_ptr()


@pytest.mark.parametrize("preset", ["llada_tiny", "dream_tiny", "sdar_tiny"])
@pytest.mark.parametrize("start", [0, 1, 5])
def test_logits_from_runs_the_head_on_the_returned_positions_only(preset, start):
    """The logits predicting tokens `start`.. of the whole forward (realigned for the shifted
    Dream), from a forward whose head saw only those positions (or one before each)."""
    torch.manual_seed(0)
    model = dllm.load_model(preset).eval()
    ids = torch.randint(4, 60, (2, 8))
    with torch.no_grad():
        whole = model(ids).logits
        expected = align_shifted(whole, start) if model.shift_logits else whole[:, start:]
        head, rows = model.output_logits, []
        model.output_logits = lambda hidden: rows.append(hidden.shape[1]) or head(hidden)
        read = logits_from(model, ids, start)
    torch.testing.assert_close(read, expected, atol=1e-5, rtol=0)
    assert rows == [8 if model.shift_logits and start == 0 else 8 - start]


def test_run_model_cuts_the_logits_of_a_model_without_logits_slice():
    class Plain(torch.nn.Module):
        def forward(self, input_ids):
            return SimpleNamespace(logits=input_ids[..., None].float().expand(-1, -1, 3))

    ids = torch.arange(6).view(1, 6)
    assert run_model(Plain(), slice(2, 4), ids)[0, :, 0].tolist() == [2.0, 3.0]
    assert run_model(Plain(), torch.tensor([[5, 0]]), ids)[0, :, 0].tolist() == [5.0, 0.0]
