import pytest

from dllm.config import compose
from dllm.data.prompts import PromptFormatter, placeholders, render
from dllm.errors import ConfigError
from dllm.tokenizer import build_char_tokenizer

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_placeholders_are_filled_and_other_braces_stay():
    values = {"question": "2+2?", "numbers": [3, 5, 7], "target": 22.0, "hint": None}
    text = render("Q: {question} {numbers}->{target}{hint} \\boxed{} {{question}}", values)
    assert text == "Q: 2+2? [3, 5, 7]->22 \\boxed{} {question}"
    assert placeholders("{a} {b} {a} {{c}} {}") == ["a", "b"]


def test_an_unknown_placeholder_names_the_known_fields():
    with pytest.raises(ConfigError, match=r"uses \{questoin\} — did you mean 'question'\?.*fields: answer, question"):
        render("{questoin}", {"question": "q", "answer": "a"})


def test_without_a_chat_template_the_system_prompt_and_suffix_frame_the_text():
    formatter = PromptFormatter("Q: {question}", system_prompt="Be brief.", prompt_suffix="<reasoning>")
    assert formatter({"question": "1+1?"}) == "Be brief.\n\nQ: 1+1?<reasoning>"
    assert formatter.chat_tokenizer is None  # no tokenizer configured


@pytest.fixture
def chat_tokenizer_dir(tmp_path):
    tokenizer = build_char_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(tmp_path)
    return str(tmp_path)


def test_the_tokenizers_chat_template_wraps_the_prompt(chat_tokenizer_dir):
    formatter = PromptFormatter("Q: {question}", "Be brief.", "<r>", chat_template=True, tokenizer=chat_tokenizer_dir)
    assert formatter({"question": "1+1?"}) == "<system>Be brief.</system><user>Q: 1+1?</user><assistant><r>"
    plain = PromptFormatter("Q: {question}", chat_template=False, tokenizer=chat_tokenizer_dir)
    assert plain({"question": "1+1?"}) == "Q: 1+1?"


def test_a_tokenizer_without_a_chat_template_leaves_the_text(tmp_path):
    build_char_tokenizer().save_pretrained(tmp_path)
    assert PromptFormatter("{question}", tokenizer=str(tmp_path))({"question": "x"}) == "x"


def test_the_file_task_follows_the_runs_tokenizer():
    assert compose(["task=file"]).task.tokenizer is None  # a preset model: the character tokenizer
    assert compose(["task=file", "model=llada", "model.pretrained=/ckpt"]).task.tokenizer == "/ckpt"
    assert compose(["task=file", "tokenizer=/tok", "model=llada", "model.pretrained=/ckpt"]).task.tokenizer == "/tok"
    assert compose(["task=file", "task.tokenizer=/mine"]).task.tokenizer == "/mine"
