import pytest

import dllm


@pytest.mark.parametrize(
    "completion, score",
    [
        (r"so $\boxed{42}$.", 1.0),
        (r"\boxed{\frac{1}{2}}", 1.0),
        (r"\fbox{x}", 1.0),
        (r"\boxed 7", 1.0),
        (r"\boxed{1} and then \boxed{2}", 1.0),
        (r"\boxed{}", 0.0),
        (r"\boxed{ $ $ }", 0.0),
        (r"\boxed{4", 0.0),
        (r"\boxed{1} and \boxed{2", 0.0),  # the last box is broken
        ("42", 0.0),
        ("", 0.0),
    ],
)
def test_scores(completion, score):
    assert dllm.build("reward", "boxed_format")(["q"], [completion], truncated=[False]) == [score]


def test_batch_needs_no_fields():
    assert dllm.build("reward", "boxed_format")(["a", "b"], [r"\boxed{1}", "1"]) == [1.0, 0.0]
