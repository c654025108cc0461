import shutil

import pytest
import torch

import dllm
from dllm.checkpoint import load_trainer_state, save_checkpoint
from dllm.run_files import CHECKPOINT_DIR


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


def test_keep_last_n_retains_the_newest_older_checkpoints(tmp_path, tiny_model, tokenizer):
    from dllm.checkpoint import kept_checkpoints
    from dllm.run_files import KEPT_DIR

    for step in range(1, 6):
        save_checkpoint(tmp_path, tiny_model, tokenizer, {"step": step}, keep=3, label=f"00-main-step{step:08d}")
    assert load_trainer_state(tmp_path)["step"] == 5
    assert [p.name for p in kept_checkpoints(tmp_path)] == ["00-main-step00000003", "00-main-step00000004"]
    assert torch.load(tmp_path / KEPT_DIR / "00-main-step00000004" / "trainer_state.pt")["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_DIR, KEPT_DIR]


def test_a_crash_between_the_renames_is_recovered(tmp_path, tiny_model, tokenizer, monkeypatch):
    """Killed after the old checkpoint moved aside but before the new one moved in: the new,
    complete one is put in place; killed before it was complete: the old one is."""
    from pathlib import Path

    from dllm.checkpoint import STAGING, recover

    save_checkpoint(tmp_path, tiny_model, tokenizer, {"step": 1})
    real_rename = Path.rename

    def die_on_swap(self, target):
        if self.name == STAGING:
            raise KeyboardInterrupt  # stands for SIGKILL between the two renames
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", die_on_swap)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, tiny_model, tokenizer, {"step": 2})
    monkeypatch.undo()
    assert not (tmp_path / CHECKPOINT_DIR).exists()
    recover(tmp_path)
    assert load_trainer_state(tmp_path)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_DIR]


def test_config_differences_name_each_changed_key():
    from dllm.checkpoint import config_differences

    saved = {"model": {"_target_": "a.llada_tiny", "d_model": 64}, "tokenizer": None}
    current = {"model": {"_target_": "a.llada_tiny", "d_model": 128, "n_layers": 4}, "tokenizer": None}
    assert config_differences(saved, current) == [
        "model.d_model is 64 in the checkpoint but 128 now",
        "model.n_layers is '<absent>' in the checkpoint but 4 now",
    ]


@pytest.mark.parametrize("damage", ["no_trainer_state", "empty"])
def test_a_checkpoint_without_its_trainer_state_is_refused_not_restarted(tmp_path, tiny_model, tokenizer, damage):
    from dllm.errors import DllmError

    save_checkpoint(tmp_path, tiny_model, tokenizer, {"step": 3})
    directory = tmp_path / CHECKPOINT_DIR
    if damage == "empty":
        for path in directory.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    else:
        (directory / "trainer_state.pt").unlink()
    with pytest.raises(DllmError) as caught:
        load_trainer_state(tmp_path)
    message = str(caught.value)
    assert str(directory / "trainer_state.pt") in message and "\n" not in message
    assert "trainer.resume=false" in message and "hydra.run.dir" in message
    assert ("is empty" in message) == (damage == "empty")


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_truncated_trainer_state_is_one_error_naming_it(tmp_path, tiny_model, tokenizer):
    from dllm.errors import DllmError

    save_checkpoint(tmp_path, tiny_model, tokenizer, {"step": 3, "optimizer": {"x": torch.zeros(1000)}})
    state = tmp_path / CHECKPOINT_DIR / "trainer_state.pt"
    truncate(state)
    with pytest.raises(DllmError, match=f"cannot read {state}: it is truncated or corrupted") as caught:
        load_trainer_state(tmp_path)
    assert "\n" not in str(caught.value)
    state.write_bytes(b"\x00garbage")
    with pytest.raises(DllmError, match=f"cannot read {state}"):
        load_trainer_state(tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.0001])  # cut in the tensors, cut in the header
def test_truncated_weights_are_one_error_naming_the_file(tmp_path, tiny_model, tokenizer, keep):
    from dllm.checkpoint import load_model_weights
    from dllm.errors import DllmError

    save_checkpoint(tmp_path, tiny_model, tokenizer, {"step": 3})
    weights = tmp_path / CHECKPOINT_DIR / "model.safetensors"
    truncate(weights, keep)
    with pytest.raises(DllmError, match=f"cannot read {weights}: it is truncated or corrupted") as caught:
        load_model_weights(dllm.load_model("llada_tiny"), tmp_path / CHECKPOINT_DIR)
    assert "\n" not in str(caught.value)


def test_truncated_tokenizer_files_are_one_error_naming_the_directory(tmp_path, tiny_model, tokenizer):
    from dllm.errors import DllmError

    save_checkpoint(tmp_path, tiny_model, tokenizer, {"step": 3})
    directory = tmp_path / CHECKPOINT_DIR
    truncate(directory / "tokenizer.json")
    with pytest.raises(DllmError, match=f"cannot read the tokenizer in {directory}") as caught:
        dllm.load_tokenizer(directory)
    assert "\n" not in str(caught.value)
