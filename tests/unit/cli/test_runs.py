import pytest
from omegaconf import OmegaConf

from dllm.cli.runs import parse_target_args, target_parser
from dllm.errors import ConfigError
from dllm.run_files import CONFIG
from dllm.targets import resolve_target


def test_a_preset_composes_the_default_config_with_overrides():
    target = resolve_target("llada_tiny", ["sampler=fast_dllm", "sampler.threshold=0.7"])
    assert target.model == "llada_tiny" and target.run_dir is None
    assert target.config.sampler.threshold == 0.7 and target.config.sampler._target_.endswith("FastDLLMSampler")


def test_a_run_directory_keeps_its_config_and_takes_edits(tmp_path):
    config = resolve_target("llada_tiny", []).config
    (tmp_path / CONFIG).write_text(OmegaConf.to_yaml(config))
    with pytest.raises(ConfigError, match="has no checkpoint/ yet"):
        resolve_target(str(tmp_path), [])
    (tmp_path / "checkpoint").mkdir()
    target = resolve_target(str(tmp_path), ["sampler=sdar", "task.num_eval=7"])
    assert target.model == str(tmp_path / "checkpoint") and target.run_dir == tmp_path
    assert target.config.sampler._target_.endswith("SDARSampler") and target.config.task.num_eval == 7
    with pytest.raises(ConfigError, match="must look like key=value"):
        resolve_target(str(tmp_path), ["sampler.steps"])


def test_overrides_are_accepted_among_the_options_in_command_line_order():
    parser = target_parser("dllm-eval", None)
    parser.add_argument("--num-samples", type=int, default=1)
    args = parse_target_args(parser, ["RUN", "sampler=sdar", "--num-samples", "2", "sampler.steps=4", "+task.x=1"])
    assert (args.target, args.num_samples) == ("RUN", 2)
    assert args.overrides == ["sampler=sdar", "sampler.steps=4", "+task.x=1"]
    args = parse_target_args(parser, ["RUN", "--num-samples", "3", "~trainer.loggers", "algorithm/estimator=trace"])
    assert args.overrides == ["~trainer.loggers", "algorithm/estimator=trace"]


@pytest.mark.parametrize("stray", ["--samples", "sampler.steps", "-x"])
def test_anything_else_unrecognised_is_refused_by_name(stray):
    parser = target_parser("dllm-eval", None)
    parser.add_argument("--num-samples", type=int, default=1)
    with pytest.raises(ConfigError, match=f"^'{stray}' is neither an option of dllm-eval nor a config override"):
        parse_target_args(parser, ["RUN", "--num-samples", "2", stray])


def test_a_run_directory_takes_an_added_key(tmp_path):
    config = resolve_target("llada_tiny", []).config
    (tmp_path / CONFIG).write_text(OmegaConf.to_yaml(config))
    (tmp_path / "checkpoint").mkdir()
    assert resolve_target(str(tmp_path), ["+task.tokenizer=char"]).config.task.tokenizer == "char"
