import pytest

from dllm.cli.train import check_overrides


@pytest.mark.parametrize(
    "argv, message",
    [
        (["trainer.max_stepz=5"], "error: trainer.max_stepz: no such key — did you mean 'trainer.max_steps'?\n"),
        (["-m", "sampler.steps=4,8", "trainer.max_stepz=5"], "error: trainer.max_stepz: no such key — did you mean"),
        (["model=llada_tiny", "sampler=lada"], "error: unknown sampler 'lada' — did you mean 'llada'? known: "),
    ],
)
def test_a_misspelled_key_or_option_is_one_did_you_mean_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_overrides(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [["model=llada_tiny", "trainer.max_steps=5"], ["-m", "sampler.steps=4,8"], ["+trainer.extra=1", "--cfg", "job"]],
)
def test_a_command_line_that_composes_passes(argv):
    check_overrides(argv)  # returns: Hydra then runs it (an added key is refused later, by validate)
