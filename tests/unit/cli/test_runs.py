import pytest
from omegaconf import OmegaConf

from dllm.cli.runs import RUN_CONFIG, resolve_target
from dllm.errors import ConfigError


def test_a_preset_composes_the_default_config_with_overrides():
    target = resolve_target("llada_tiny", ["sampler=fast_dllm", "sampler.threshold=0.7"])
    assert target.model == "llada_tiny" and target.run_dir is None
    assert target.config.sampler.threshold == 0.7 and target.config.sampler._target_.endswith("FastDLLMSampler")


def test_a_run_directory_keeps_its_config_and_takes_edits(tmp_path):
    config = resolve_target("llada_tiny", []).config
    (tmp_path / RUN_CONFIG).write_text(OmegaConf.to_yaml(config))
    with pytest.raises(ConfigError, match="has no checkpoint/ yet"):
        resolve_target(str(tmp_path), [])
    (tmp_path / "checkpoint").mkdir()
    target = resolve_target(str(tmp_path), ["sampler=sdar", "task.num_eval=7"])
    assert target.model == str(tmp_path / "checkpoint") and target.run_dir == tmp_path
    assert target.config.sampler._target_.endswith("SDARSampler") and target.config.task.num_eval == 7
    with pytest.raises(ConfigError, match="must look like key=value"):
        resolve_target(str(tmp_path), ["sampler.steps"])
