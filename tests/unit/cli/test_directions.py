import pytest

from dllm.cli.directions import best, better, is_share


@pytest.mark.parametrize(
    "metric",
    [
        "loss",
        "eval/nfe_per_token",
        "rollout_nfe",
        "rollout_time",
        "step_time",
        "reward_failures",
        "eval/reward_failures",
        "eval/truncated",
        "truncated",
        "wall time (s)",
    ],
)
def test_costs_are_better_lower(metric):
    assert better(metric) == "lower"


@pytest.mark.parametrize(
    "metric",
    [
        "eval/accuracy",
        "reward",
        "eval/mean_reward",
        "eval/pass@1",
        "eval/pass@16",
        "eval/tokens_per_s",
        "reward/format",
        "eval/reward/correct",
        "kept_fraction",
    ],
)
def test_scores_are_better_higher(metric):
    assert better(metric) == "higher"


@pytest.mark.parametrize("metric", ["lr", "grad_norm", "eval/mean_length", "response_length", "reward_std"])
def test_settings_and_sizes_have_no_direction(metric):
    assert better(metric) is None and best([1.0, 2.0], metric) is None


def test_unknown_names_follow_the_stated_rule():
    assert [better(m) for m in ("val/mlm_loss", "decode_seconds", "judge_errors", "prefill_time_ms")] == ["lower"] * 4
    assert [better(m) for m in ("bleu", "eval/f1", "curriculum/level")] == ["higher"] * 3


def test_best_is_the_minimum_of_a_cost_and_the_maximum_of_a_score():
    assert best([2.0, 0.5, 0.7], "loss") == 0.5
    assert best([0.2, 0.9, 0.4], "eval/accuracy") == 0.9
    assert best([], "loss") is None


def test_only_shares_are_on_the_unit_interval():
    assert [is_share(m) for m in ("eval/accuracy", "eval/pass@8", "eval/truncated", "kept_fraction")] == [True] * 4
    assert [is_share(m) for m in ("reward", "loss", "eval/reward/correct", "eval/tokens_per_s")] == [False] * 4
