import logging

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.hydra_config import HydraConfig

import dllm
from dllm.config import build_node, compose
from dllm.errors import ConfigError
from dllm.rewards.base import score_batch
from dllm.rewards.weighted_sum import TermSpec, WeightedSum
from dllm.run import plan

TERMS = {"gsm8k": 1.0, "boxed_format": 0.5, "think": {"reward": "format_tags", "tags": ["think"], "weight": 0.25}}
COMPLETIONS = [
    r"<think>2+2</think> \boxed{4}",  # 1 + 0.5 + 0.25
    "<think>2+2</think> 5",  # think only: 0.25
    r"\boxed{4}",  # 1 + 0.5
    r"\boxed{4}",  # right, but cut at the length cap
    "no idea",
]
FIELDS = {"answer": ["4"] * 5, "truncated": [False, False, False, True, False]}


def build(**kwargs):
    return dllm.build("reward", "weighted_sum", **kwargs)


def test_weighted_total_and_breakdown_by_hand():
    reward = build(terms=TERMS)
    assert reward(["q"] * 5, COMPLETIONS, **FIELDS) == pytest.approx([1.75, 0.25, 1.5, 0.0, 0.0])
    assert reward.breakdown(["q"] * 5, COMPLETIONS, **FIELDS) == {
        "gsm8k": [1.0, 0.0, 1.0, 0.0, 0.0],
        "boxed_format": [1.0, 0.0, 1.0, 0.0, 0.0],
        "think": [1.0, 1.0, 0.0, 0.0, 0.0],
    }
    assert [(name, weight) for name, weight, _ in reward.weighted_terms()] == [
        ("gsm8k", 1.0),
        ("boxed_format", 0.5),
        ("think", 0.25),
    ]


def test_truncated_completions_keep_their_scores_when_asked():
    reward = build(terms=TERMS, zero_truncated=False)
    assert reward(["q"] * 5, COMPLETIONS, **FIELDS) == pytest.approx([1.75, 0.25, 1.5, 1.5, 0.0])
    assert build(terms=TERMS)(["q"] * 5, COMPLETIONS, answer=FIELDS["answer"]) == pytest.approx(
        [1.75, 0.25, 1.5, 1.5, 0.0]
    )  # no truncated field: nothing is cut


def test_negative_weights_are_penalties():
    reward = build(terms={"gsm8k": 1.0, "boxed_format": -0.5})
    assert reward(["q", "q"], [r"\boxed{4}", "4"], answer=["4", "4"]) == [0.5, 1.0]


def test_math_with_format():
    reward = build(terms={"math": 1.0, "format_tags": 0.1})
    completions = [r"<reasoning>half</reasoning><answer>\boxed{\frac12}</answer>", r"\boxed{0.5}", "<answer>1</answer>"]
    assert reward(["q"] * 3, completions, answer=["0.5"] * 3) == pytest.approx([1.1, 1.0, 0.0])


@pytest.mark.parametrize(
    "terms, specs",
    [
        ("exact_match", [TermSpec("exact_match", "exact_match", 1.0)]),
        (["gsm8k", "boxed_format"], [TermSpec("gsm8k", "gsm8k", 1.0), TermSpec("boxed_format", "boxed_format", 1.0)]),
        ({"math": 2}, [TermSpec("math", "math", 2.0)]),
        ({"math": {"timeout_s": 9.0}}, [TermSpec("math", "math", 1.0, {"timeout_s": 9.0})]),
        ({"a": {"reward": "exact_match", "weight": -1}}, [TermSpec("a", "exact_match", -1.0)]),
    ],
)
def test_term_forms(terms, specs):
    reward = build(terms=terms)
    assert reward.specs == specs
    assert list(reward.breakdown(["q"], ["1"], answer=["1"])) == [s.name for s in specs]


def test_term_options_reach_the_term():
    reward = build(terms={"math": {"timeout_s": 9.0}, "exact": {"reward": "exact_match", "case_sensitive": False}})
    assert reward.rewards["math"].timeout_s == 9.0
    assert reward(["q"], ["YES"], answer=["yes"]) == [1.0]


@pytest.mark.parametrize(
    "terms, message",
    [
        ({"mathh": 1.0}, r"reward.terms.mathh: unknown reward 'mathh' — did you mean 'math'\?"),
        ({"math": "heavy"}, r"reward.terms.math='heavy': the weight must be a finite number"),
        ({"math": True}, r"the weight must be a finite number"),
        ({"math": float("nan")}, r"the weight must be a finite number"),
        ({"math": {"weight": None}}, r"the weight must be a finite number"),
        ({"math": {"timeot_s": 3}}, r"unknown key reward.terms.math.timeot_s — did you mean 'timeout_s'"),
        ({"math": {"timeout_s": "fast"}}, r"reward.terms.math.timeout_s='fast' has the wrong type: expected float"),
        ({"math": {"timeout_s": -1}}, r"reward.terms.math.timeout_s=-1 must be a positive number"),
        ({"t": {"reward": "format_tags", "tags": []}}, r"reward.terms.t.tags is empty"),
        ({"w": {"reward": "weighted_sum"}}, r"reward.terms.w: a weighted_sum cannot be a term of another"),
        ({}, r"names no reward"),
        (["math", "math"], r"names a reward twice"),
    ],
)
def test_bad_terms_are_refused_naming_the_key(terms, message):
    with pytest.raises(ConfigError, match=message):
        build(terms=terms)


def test_command_line_composition_validates_and_builds_one_reward(tiny_model):
    cfg = compose(
        [
            "model=llada_tiny",
            "reward=weighted_sum",
            "reward.terms={exact_match: 1.0, boxed_format: 0.1}",
            "reward.terms.exact_match=2.0",
        ]
    )
    reward = plan(cfg).components(model=tiny_model).reward
    assert isinstance(reward, WeightedSum)
    assert [(s.name, s.weight) for s in reward.specs] == [("exact_match", 2.0), ("boxed_format", 0.1)]
    assert reward(["q", "q"], [r"\boxed{1}", "1"], answer=["1", "1"]) == pytest.approx([0.1, 2.0])


def test_list_form_on_the_command_line():
    cfg = compose(["reward=weighted_sum", "reward.terms=[gsm8k,boxed_format]"])
    plan(cfg)
    assert build_node(cfg.reward)(["q"], [r"\boxed{3}"], answer=["3"]) == [2.0]


@pytest.mark.parametrize(
    "override, message",
    [
        ("reward.terms={math: {timeot_s: 3}}", r"unknown key reward.terms.math.timeot_s"),
        ("reward.terms={gsm8: 1.0}", r"unknown reward 'gsm8' — did you mean 'gsm8k'"),
    ],
)
def test_validation_checks_every_term_before_building(override, message, monkeypatch):
    built = []
    monkeypatch.setattr(WeightedSum, "__init__", lambda self, **kw: built.append(kw))
    with pytest.raises(ConfigError, match=message):
        plan(compose(["reward=weighted_sum", override]))
    assert built == []  # refused by the key checks, before the reward (or anything) is built


def test_hydra_multi_select_is_refused_naming_the_composition():
    fix = r"reward=weighted_sum reward.terms='\{math: 1.0, format_tags: 1.0\}'"
    with pytest.raises(ConfigError, match=r"reward=\[math,format_tags\] would merge the configs .* " + fix):
        compose(["reward=[math,format_tags]"])
    # Under dllm-train the overrides come from Hydra itself.
    with initialize_config_module(config_module="dllm.conf", version_base="1.3"):
        cfg = hydra_compose("train", overrides=["reward=[math,format_tags]"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        with pytest.raises(ConfigError, match=fix):
            plan(cfg)
    finally:
        HydraConfig.instance().cfg = None


def test_a_plugin_reward_is_a_term():
    if "acme_len" not in dllm.REWARDS:
        pytest.skip("the example plugin is not installed (pip install -e examples/plugin)")
    reward = build(terms={"acme_len": 2.0, "short": {"reward": "acme_len", "max_chars": 4}})
    # acme_len: 1 up to max_chars characters, falling linearly to 0 at twice that.
    assert reward.breakdown(["q", "q"], ["abcd", "a" * 12]) == {"acme_len": [1.0, 0.5], "short": [1.0, 0.0]}
    assert reward(["q", "q"], ["abcd", "a" * 12]) == [3.0, 1.0]


def test_score_batch_guards_each_term_alone(caplog):
    reward = build(terms={"gsm8k": 1.0, "boxed_format": 0.5})
    # gsm8k raises on a ground truth without a number (a RewardError: a mistake, not bad luck) ...
    with pytest.raises(dllm.DllmError, match="has no number"):
        score_batch(reward, ["q"], [r"\boxed{4}"], {"answer": ["none"]})

    # ... while a term that fails by accident costs its own scores only.
    def broken(*args, **kwargs):
        raise RuntimeError("flaky")

    reward.rewards["gsm8k"] = broken
    with caplog.at_level(logging.WARNING, logger="dllm.rewards.base"):
        scores = score_batch(reward, ["q", "q"], [r"\boxed{4}", "4"], {"answer": ["4", "4"], "truncated": [0, 1]})
    assert scores.total == [0.5, 0.0] and scores.failures == 1
    assert scores.terms == {"gsm8k": [0.0, 0.0], "boxed_format": [1.0, 0.0]}
    assert "reward 'gsm8k' raised RuntimeError: flaky" in caplog.text


def test_repr_names_the_terms():
    assert repr(build(terms={"math": 1.0, "f": {"reward": "format_tags", "weight": 0.1}})) == (
        "WeightedSum(math=1*math, f=0.1*format_tags, zero_truncated=True)"
    )
