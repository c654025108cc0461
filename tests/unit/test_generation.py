import torch

import dllm
from dllm.generation import decode_batch
from dllm.tokenizer import build_char_tokenizer

GEN = 6


def scripted(model_cls, tokenizer, scripts, seen_training):
    """A model that writes `scripts[b]` (text, `None` for EOS) into row b's completion."""
    ids = [[tokenizer.eos_token_id if c is None else tokenizer.convert_tokens_to_ids(c) for c in s] for s in scripts]

    def logits_fn(input_ids):
        seen_training.append(model.training)
        logits = torch.zeros(*input_ids.shape, len(tokenizer))
        start = input_ids.shape[1] - GEN
        for row, script in enumerate(ids):
            logits[row, start + torch.arange(GEN), torch.tensor(script)] = 10.0
        return logits

    model = model_cls(logits_fn)
    return model


def test_decode_batch_cuts_at_eos_under_the_shipped_defaults_for_ragged_prompts(scripted_model):
    tokenizer, seen_training = build_char_tokenizer(), []
    model = scripted(scripted_model, tokenizer, [["a", "b", None, "c", "c", "c"], list("xyzwvu")], seen_training)
    model.train()
    sampler = dllm.build_sampler("llada", steps=GEN, block_length=GEN)  # stop_at_eos=True, as shipped
    decoded = decode_batch(model, tokenizer, sampler, ["12+345=", "7+8="], GEN, torch.Generator().manual_seed(0))
    assert decoded.texts == ["ab", "xyzwvu"] and decoded.lengths == [2, 6]
    assert decoded.truncated.tolist() == [False, True]
    assert decoded.prompt_mask.sum(1).tolist() == [7, 4] and decoded.prompt_ids.shape == (2, 7)
    assert tokenizer.decode(decoded.completions[0]) == "ab" + tokenizer.eos_token * 4  # users' view: EOS after EOS
    assert decoded.output.nfe >= 1 and decoded.elapsed > 0
    assert set(seen_training) == {False} and model.training  # decoded in eval mode, the mode restored after


def test_the_chat_template_wraps_each_prompt_as_a_user_message_only_when_asked(scripted_model):
    tokenizer = build_char_tokenizer()
    tokenizer.chat_template = (
        "{% for m in messages %}[{{ m['content'] }}]{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
    )
    model = scripted(scripted_model, tokenizer, [list("123456")] * 2, [])
    sampler = dllm.build_sampler("llada", steps=GEN, block_length=GEN)
    for chat, expected in ((True, ["[1+1=]A:", "[22+2=]A:"]), (False, ["1+1=", "22+2="])):
        decoded = decode_batch(model, tokenizer, sampler, ["1+1=", "22+2="], GEN, chat_template=chat)
        assert tokenizer.batch_decode(decoded.prompt_ids, skip_special_tokens=True) == expected
        assert decoded.texts == ["123456"] * 2
