from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

from dllm.cli.evaluate import (
    default_output_dir,
    evaluation_fingerprint,
    parse_pass_at,
    summary_line,
    use_target_tokenizer,
    weights_signature,
)
from dllm.errors import DllmError
from dllm.evaluation import EvalResult
from dllm.targets import Target, resolve_target


def test_pass_at_parses_comma_separated_ks():
    assert parse_pass_at("1,5") == [1, 5] and parse_pass_at(None) is None
    for bad in ("1,x", "0", ""):
        with pytest.raises(DllmError, match="comma-separated positive integers"):
            parse_pass_at(bad)


def test_the_same_evaluation_always_lands_in_one_directory(tmp_path):
    target = resolve_target("llada_tiny", ["task=file"])
    cfg = target.config
    fingerprint = evaluation_fingerprint(cfg, target, seed=0, samples=4, batch_size=8)
    assert fingerprint == evaluation_fingerprint(cfg, target, seed=0, samples=4, batch_size=8)
    assert fingerprint != evaluation_fingerprint(cfg, target, seed=1, samples=4, batch_size=8)
    out = default_output_dir(cfg, target, 4, fingerprint)
    assert out.parent.as_posix() == "outputs/eval" and out.name == f"file-llada-n4-{fingerprint[:8]}"
    run = Target(str(tmp_path / "checkpoint"), cfg, tmp_path)
    assert default_output_dir(cfg, run, 4, fingerprint).parent == tmp_path / "eval"


def test_new_weights_change_the_fingerprint(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"1")
    (tmp_path / "config.json").write_text("{}")
    before = weights_signature(str(tmp_path))
    assert [name for name, _, _ in before] == ["model.safetensors"]
    (tmp_path / "model.safetensors").write_bytes(b"22")
    assert weights_signature(str(tmp_path)) != before and weights_signature("llada_tiny") == ["llada_tiny"]


def test_a_file_task_uses_the_chat_template_of_the_checkpoint_it_evaluates(tmp_path):
    cfg = OmegaConf.create({"task": {"tokenizer": None, "chat_template": True}})
    use_target_tokenizer(cfg, Target(str(tmp_path), cfg, None), [])
    assert cfg.task.tokenizer == str(tmp_path)
    cfg.task.tokenizer = "/mine"
    use_target_tokenizer(cfg, Target(str(tmp_path), cfg, None), ["task.tokenizer=/mine"])
    assert cfg.task.tokenizer == "/mine"  # an explicit choice wins
    preset = OmegaConf.create({"task": {"tokenizer": None, "chat_template": True}})
    use_target_tokenizer(preset, Target("llada_tiny", preset, None), [])
    assert preset.task.tokenizer is None  # a preset has the character tokenizer: no chat template
    other = OmegaConf.create({"task": {"num_eval": 3}})
    use_target_tokenizer(other, Target(str(tmp_path), other, None), [])
    assert "tokenizer" not in other.task


def test_the_summary_line():
    result = EvalResult(
        0.25,
        8,
        3.5,
        12.0,
        0.5,
        mean_reward=0.3,
        num_prompts=4,
        samples_per_prompt=2,
        pass_at_k={"pass@1": 0.25, "pass@2": 0.5},
    )
    assert summary_line(result) == (
        "accuracy 0.2500 over 4 prompts x 2 samples | mean reward 0.3000 | pass@1 0.2500 | pass@2 0.5000 | "
        "mean length 3.50 tokens | 12.0 tokens/s | 0.500 NFE/token"
    )
    assert summary_line(SimpleNamespace(**{**result.__dict__, "samples_per_prompt": 1})).startswith(
        "accuracy 0.2500 over 4 prompts | "
    )
