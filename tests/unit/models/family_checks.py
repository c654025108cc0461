"""Checks every family must pass: save/load through dllm and the Auto classes, bf16, cache."""

import json

import torch
from transformers import AutoModel

import dllm


def check_round_trips(model, tmp_path, model_type):
    ids = torch.randint(4, 100, (2, 8))
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == model_type
    expected = model(ids).logits
    for loaded in (dllm.load_model(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert type(loaded) is type(model)
        assert torch.equal(loaded.eval()(ids).logits, expected)
    in_bf16 = dllm.load_model(tmp_path, dtype="bfloat16").eval()
    assert next(in_bf16.parameters()).dtype == torch.bfloat16
    torch.testing.assert_close(in_bf16(ids).logits.float(), expected, atol=0.05, rtol=0.05)


def check_prefix_cache_is_exact(model):
    """A forward through a cache of the prefix equals one forward in which the prefix cannot
    see the rest (the prefix's keys are computed without it, as in the cache)."""
    ids = torch.randint(4, 100, (2, 8))
    prefix = model(ids[:, :4], use_cache=True)
    rest = model(ids[:, 4:], past_key_values=prefix.past_key_values).logits
    positions = torch.arange(8)
    prefix_blind = ~((positions[:, None] < 4) & (positions[None, :] >= 4))
    if model.block_size is not None:
        prefix_blind &= (positions[None, :] // model.block_size) <= (positions[:, None] // model.block_size)
    full = model(ids, attention_mask=prefix_blind[None, None]).logits
    torch.testing.assert_close(prefix.logits, full[:, :4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rest, full[:, 4:], atol=1e-5, rtol=1e-5)
    assert prefix.past_key_values.length == 4


def check_uncommitted_forward_leaves_the_cache(model):
    ids = torch.randint(4, 100, (1, 8))
    cache = model(ids[:, :4], use_cache=True).past_key_values
    first = model(ids[:, 4:], past_key_values=cache).logits
    assert cache.length == 4
    again = model(ids[:, 4:], past_key_values=cache).logits
    assert torch.equal(first, again)


def check_replace_position(model):
    """Dual caching: the block written at its own slots of a full-length cache."""
    ids = torch.randint(4, 100, (1, 12))
    cache = model(ids, use_cache=True).past_key_values
    block = model(ids[:, 4:8], past_key_values=cache, replace_position=4).logits
    full = model(ids).logits
    torch.testing.assert_close(block, full[:, 4:8], atol=1e-5, rtol=1e-5)
    assert cache.length == 12


def check_gradient_checkpointing(model):
    ids = torch.randint(4, 100, (2, 8))
    model.train()
    model(ids).logits.square().mean().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model(ids).logits.square().mean().backward()
    for a, p in zip(plain, model.parameters()):
        torch.testing.assert_close(a, p.grad)
