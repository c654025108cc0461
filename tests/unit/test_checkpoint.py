import pytest
import torch

import dllm
from dllm.checkpoint import CHECKPOINT_DIR, load_trainer_state, save_checkpoint


def test_save_replaces_the_checkpoint_and_leaves_no_staging(tmp_path, tiny_model, tokenizer):
    assert load_trainer_state(tmp_path) is None
    save_checkpoint(tmp_path, tiny_model, tokenizer, {"step": 1})
    with torch.no_grad():
        tiny_model.model.transformer.wte.weight.add_(1.0)
    save_checkpoint(tmp_path, tiny_model, tokenizer, {"step": 2})
    assert load_trainer_state(tmp_path)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_DIR]
    loaded = dllm.load_model(tmp_path / CHECKPOINT_DIR)
    assert torch.equal(loaded.model.transformer.wte.weight, tiny_model.model.transformer.wte.weight)
    assert len(dllm.load_tokenizer(tmp_path / CHECKPOINT_DIR)) == 100


def test_a_crash_mid_write_keeps_the_last_good_checkpoint(tmp_path, tiny_model, tokenizer, monkeypatch):
    save_checkpoint(tmp_path, tiny_model, tokenizer, {"step": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, tiny_model, tokenizer, {"step": 2})
    monkeypatch.undo()
    assert load_trainer_state(tmp_path)["step"] == 1
