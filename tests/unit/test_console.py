import logging

from dllm.console import metrics_line
from tests.unit.test_trainer import RL_EVERY_THIRD_STEP, run


def test_a_metrics_line_shows_step_loss_reward_lr_and_time():
    record = {"step": 8, "loss": 0.123456, "reward": 0.5, "accuracy": 0.25, "lr": 3e-4, "step_time": 0.5,
              "elapsed": 61.4, "rollouts_covered": 2, "steps_covered": 4, "ratio": 1.0}  # fmt: skip
    assert metrics_line(record, 10, "main") == (
        "main step 8/10 | loss 0.1235 | reward 0.5 | accuracy 0.25 | lr 0.0003 | 0.5 s/step | 2 rollouts"
        " | elapsed 0:01:01"
    )


def test_a_run_prints_its_directory_and_settings_then_a_line_per_log_interval(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="dllm.trainer"):
        records = run(tmp_path, [*RL_EVERY_THIRD_STEP, "trainer.log_every=4"])
    messages = [r.getMessage() for r in caplog.records if r.name == "dllm.trainer"]
    assert messages[0] == f"run directory: {tmp_path.resolve()}"
    assert messages[1].startswith("model ")
    assert "M parameters, float32, autocast off) on cpu; task addition" in messages[1]
    # diffu_grpo brings d1's optimizer; addition_tiny's warmup_steps (an experiment) overrides it.
    # The preset is named `rl` here (no Hydra choices outside dllm-train), its parts by their keys.
    assert messages[2] == (
        "main: algorithm rl (estimator one_step, advantage mean, objective ppo, filters none), "
        "10 steps x batch 4 (grad_accum 1), lr 3e-06 (warmup 2 steps, then constant), betas (0.9, 0.99), "
        "weight decay 0.1 (matrices), clip 0.2, log every 4"
    )
    lines = [m for m in messages if " | " in m]
    assert [line.split(" | ")[0] for line in lines] == ["step 4/10", "step 8/10", "step 10/10"]
    logged = [r for r in records if "loss" in r]
    assert all(f"loss {r['loss']:.4g} | reward {r['reward']:.4g}" in line for r, line in zip(logged, lines))
    assert messages[-1].startswith("evaluation at step 10: accuracy ")


def test_trainer_progress_false_silences_every_bar_rollouts_included(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    run(tmp_path / "quiet", [*RL_EVERY_THIRD_STEP, "trainer.progress=false"])
    assert "rollout" not in capfd.readouterr().err
    run(tmp_path / "shown", RL_EVERY_THIRD_STEP)
    assert "rollout" in capfd.readouterr().err  # the check sees bars when they are on
