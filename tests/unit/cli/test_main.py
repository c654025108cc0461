import pytest

import dllm
from dllm.cli.main import list_components, main


def test_list_every_kind_and_one_kind(capsys):
    listing = list_components(None).splitlines()
    assert any(line.startswith("sampler: ") and "llada" in line for line in listing)
    assert "sdar_tiny" in list_components("model").splitlines()
    main(["list", "estimator"])
    assert capsys.readouterr().out.split() == ["block_mask", "coupled", "elbo", "one_step", "random_mask", "trace"]
    algorithms = list_components("algorithm").splitlines()
    assert "rl" in algorithms and "sft" in algorithms and "tracerl (preset of rl)" in algorithms


def test_unknown_kind_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["list", "samplers"])
    assert exit_info.value.code == 2
    assert "did you mean 'sampler'" in capsys.readouterr().err


def test_list_shows_experiments_trainers_and_curricula():
    kinds = dict(line.split(": ", 1) for line in list_components(None).splitlines() if ": " in line)
    assert {"experiment", "trainer", "curriculum", "estimator", "sampler"} <= set(kinds)
    assert "addition_tiny" in kinds["experiment"].split(", ") and "ddp" in kinds["trainer"].split(", ")
    assert list_components("curriculum").splitlines() == ["difficulty", "pass_rate"]


@pytest.mark.parametrize("kind", ["experiment", "trainer", "algorithm/curriculum", "algorithm/estimator", "task"])
def test_list_of_any_config_group_names_its_yaml_options(kind):
    from dllm.config_files import group_options

    listed = [name.split(" (preset")[0] for name in list_components(kind).splitlines()]
    assert set(group_options(kind)) <= set(listed) and len(group_options(kind)) >= 2


def test_presets_say_what_they_build_so_the_rl_presets_can_be_counted():
    algorithms = list_components("algorithm").splitlines()
    rl_presets = [line.split(" ")[0] for line in algorithms if line.endswith("(preset of rl)")]
    assert {"tracerl", "tracerl_value", "diffu_grpo", "coupled_grpo", "wd1", "dapo"} <= set(rl_presets)
    offline = [line.split(" ")[0] for line in algorithms if line.endswith("(preset of vrpo)")]
    assert offline == ["dpo"]
    assert len(rl_presets) + len(offline) == len(dllm.ALGORITHMS.presets())  # every preset says what it builds
    assert "tracerl_value (preset of rl)" in algorithms  # through tracerl, itself a preset
    assert "countdown_file (preset of file)" in list_components("task").splitlines()
