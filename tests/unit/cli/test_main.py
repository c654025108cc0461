import pytest

from dllm.cli.main import list_components, main


def test_list_every_kind_and_one_kind(capsys):
    listing = list_components(None).splitlines()
    assert any(line.startswith("sampler: ") and "llada" in line for line in listing)
    assert "sdar_tiny" in list_components("model").splitlines()
    main(["list", "estimator"])
    assert capsys.readouterr().out.split() == ["coupled", "one_step", "random_mask", "trace"]
    algorithms = list_components("algorithm").splitlines()
    assert "rl" in algorithms and "sft" in algorithms and "tracerl (preset)" in algorithms


def test_unknown_kind_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["list", "samplers"])
    assert exit_info.value.code == 2
    assert "did you mean 'sampler'" in capsys.readouterr().err
