import pytest

from dllm.cli.common import reports_user_errors
from dllm.errors import ConfigError, did_you_mean


def test_did_you_mean():
    assert did_you_mean("lada", ["llada", "dream"]) == " — did you mean 'llada'?"
    assert did_you_mean("zzz", ["llada"]) == ""
    assert did_you_mean("max_stepz", ["max_steps", "lr"], "trainer.") == " — did you mean 'trainer.max_steps'?"


def test_user_errors_print_one_line_and_exit_2(capsys):
    @reports_user_errors
    def command():
        raise ConfigError("steps (3) must be a multiple of 2")

    with pytest.raises(SystemExit) as exit_info:
        command()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: steps (3) must be a multiple of 2\n"
