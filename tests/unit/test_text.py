import pytest
import torch

from dllm.text import (
    completion_lengths,
    cut_rows,
    decode_completions,
    last_boxed,
    matching_brace,
    through_eos,
    token_offsets,
    truncated,
)
from dllm.tokenizer import build_char_tokenizer

EOS, MASK = 1, 2
# rows: EOS in the middle, none (truncated), EOS first, EOS twice, a token after EOS that is not EOS
COMPLETIONS = torch.tensor([[40, 41, EOS, EOS], [40, 41, 42, 43], [EOS, 40, 41, 42], [40, EOS, 41, EOS]])


def test_the_eos_cut_ends_each_completion_at_its_first_eos():
    assert completion_lengths(COMPLETIONS, EOS).tolist() == [2, 4, 0, 1]
    assert truncated(COMPLETIONS, EOS).tolist() == [False, True, False, False]
    assert through_eos(COMPLETIONS, EOS).int().tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]
    assert cut_rows(COMPLETIONS, EOS) == [[40, 41], [40, 41, 42, 43], [], [40]]


def test_without_an_eos_token_nothing_is_cut_or_truncated():
    assert completion_lengths(COMPLETIONS, None).tolist() == [4, 4, 4, 4]
    assert truncated(COMPLETIONS, None).tolist() == [False] * 4
    assert bool(through_eos(COMPLETIONS, None).all())


def test_decoded_texts_and_token_offsets_read_the_cut_completion():
    tokenizer = build_char_tokenizer()
    ids = torch.tensor(
        [tokenizer.encode("ab c") + [tokenizer.eos_token_id, *tokenizer.encode("zz")], tokenizer.encode("xyz  wv")]
    )
    texts, lengths = decode_completions(tokenizer, ids)
    assert texts == ["ab c", "xyz  wv"] and lengths == [4, 7]
    assert token_offsets(tokenizer, ids) == [[0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6]]


@pytest.mark.parametrize(
    "text, content",
    [
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{\frac{a^{2}}{b_{1}}} and more", r"\frac{a^{2}}{b_{1}}"),
        (r"\boxed{1} then \boxed{2}", "2"),
        (r"\boxed{\boxed{1}+1}", r"\boxed{1}+1"),  # a box inside a box belongs to it
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces do not count
        (r"\boxed{\text{\}}}", r"\text{\}}"),
        (r"\boxed {7}", "7"),
        ("\\boxed\n{7}", "7"),
        (r"\boxed 5.", "5"),
        (r"$\boxed 42$ is it", "42"),
        (r"\fbox{x+1}", "x+1"),
        (r"\boxed{}", ""),
        (r"\boxed{3", None),  # never closed
        (r"\boxed{1} and \boxed{2", None),  # the last box is broken: no answer, not the earlier one
        (r"\boxed{1} and \boxed{{2}", None),
        (r"\boxedx{1}", None),  # another command
        (r"\boxed", None),
        ("no box", None),
        ("", None),
    ],
)
def test_last_boxed(text, content):
    assert last_boxed(text) == content


@pytest.mark.parametrize(
    "text, start, end",
    [("{a}", 0, 2), ("x{a{b}c}d", 1, 7), (r"{\}}", 0, 3), (r"{\\}", 0, 3), ("{{}", 0, -1), ("{", 0, -1)],
)
def test_matching_brace(text, start, end):
    assert matching_brace(text, start) == end
