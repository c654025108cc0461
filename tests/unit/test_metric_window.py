import pytest

from dllm.metric_window import MetricWindow, is_count


def test_steps_are_averaged_rollouts_counted_once_counts_summed_and_states_kept_last():
    first = {"reward": 0.5, "accuracy": 0.5, "reward_failures": 1.0, "curriculum/visited": 3.0}
    second = {"reward": 0.25, "accuracy": 0.0, "reward_failures": 2.0, "reward/code/judged_inside": 3.0,
              "curriculum/visited": 7.0}  # fmt: skip
    window = MetricWindow()
    window.add({"loss": 1.0, "lr": 0.1, "elapsed": 2.0, "note": "text"}, (1, first))
    window.add({"loss": 2.0, "lr": 0.2, "elapsed": 3.0}, (1, first))  # the same rollout: counted once
    window.add({"loss": 6.0, "lr": 0.3, "elapsed": 5.0, "reward_failures": 4.0}, (2, second))
    line = window.summary()
    assert line["loss"] == pytest.approx(3.0)  # every step
    assert line["reward"] == pytest.approx(0.375) and line["accuracy"] == pytest.approx(0.25)  # each rollout once
    assert line["reward_failures"] == 3.0 and line["reward/code/judged_inside"] == 3.0  # the rollouts' counts
    assert line["lr"] == 0.3 and line["elapsed"] == 5.0 and line["curriculum/visited"] == 7.0
    assert line["steps_covered"] == 3 and line["rollouts_covered"] == 2
    assert "note" not in line


def test_a_window_without_rollouts_says_so_and_a_reset_empties_it():
    window = MetricWindow()
    window.add({"loss": 4.0, "skipped_steps": 1})
    assert window.summary() == {"loss": 4.0, "skipped_steps": 1.0, "rollouts_covered": 0, "steps_covered": 1}
    window.reset()
    assert window.summary() == {"rollouts_covered": 0, "steps_covered": 0}


def test_its_state_round_trips_so_a_resumed_line_covers_the_same_steps():
    window = MetricWindow()
    window.add({"loss": 1.0}, (4, {"reward": 0.5}))
    restored = MetricWindow()
    restored.load_state_dict(window.state_dict())
    for w in (window, restored):
        w.add({"loss": 3.0}, (5, {"reward": 1.0}))
    assert restored.summary() == window.summary() == {
        "loss": 2.0, "reward": 0.75, "rollouts_covered": 2, "steps_covered": 2
    }  # fmt: skip


def test_counts_are_the_named_ones_and_reward_term_counters():
    assert is_count("reward_failures") and is_count("reward/code/judged_inside")
    assert not is_count("reward/code") and not is_count("reward") and not is_count("loss")
