import pytest

import dllm
from dllm.errors import ConfigError

D1 = "<reasoning>\n2 + 2 = 4\n</reasoning>\n<answer>\n4\n</answer>\n"


def score(completion, **options):
    return dllm.build("reward", "format_tags", **options)(["q"], [completion], truncated=[False])[0]


@pytest.mark.parametrize(
    "completion, loose, strict",
    [
        (D1, 1.0, 1.0),
        ("<reasoning></reasoning><answer></answer>", 1.0, 1.0),  # empty blocks still follow the layout
        ("Sure. " + D1, 1.0, 0.0),  # text before
        (D1 + "Done.", 1.0, 0.0),  # text after
        ("<reasoning>a</reasoning> so <answer>4</answer>", 1.0, 0.0),  # text between
        ("<answer>4</answer><reasoning>a</reasoning>", 0.0, 0.0),  # wrong order
        ("<reasoning>a<answer>4</answer></reasoning>", 0.0, 0.0),  # nested, not consecutive
        ("<reasoning>a</reasoning><reasoning>b</reasoning><answer>4</answer>", 0.0, 0.0),  # a tag twice
        ("</reasoning>a<reasoning><answer>4</answer>", 0.0, 0.0),  # closed before opened
        ("<reasoning>a</reasoning>", 0.0, 0.0),  # a tag missing
        ("<Reasoning>a</Reasoning><answer>4</answer>", 0.0, 0.0),  # tags are case-sensitive
        ("4", 0.0, 0.0),
    ],
)
def test_d1_layout(completion, loose, strict):
    assert score(completion) == loose
    assert score(completion, strict=True) == strict


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("<think>2+2 is 4</think> The answer is 4.", 1.0),
        ("<think>unfinished", 0.0),
        ("The answer is 4.", 0.0),
    ],
)
def test_think_style(completion, expected):
    assert score(completion, tags=["think"]) == expected


@pytest.mark.parametrize(
    "completion, expected",
    [
        (D1, 1.0),
        ("<reasoning>a</reasoning>", 1 / 3),  # one of two tags well formed; the layout earns the last third
        ("<answer>4</answer><reasoning>a</reasoning>", 2 / 3),  # both well formed, wrong order
        ("nothing", 0.0),
    ],
)
def test_partial_credit(completion, expected):
    assert score(completion, partial=True) == pytest.approx(expected)


@pytest.mark.parametrize(
    "tags, message",
    [
        ([], "reward.tags is empty"),
        (["<think>"], "'<think>' is not a tag name"),
        (["a", "a"], "names a tag twice"),
    ],
)
def test_bad_tags_are_refused(tags, message):
    with pytest.raises(ConfigError, match=message):
        dllm.build("reward", "format_tags", tags=tags)
