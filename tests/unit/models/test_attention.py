import torch

from dllm.models.attention import attention_backend, key_padding_mask, sdpa_attention


def test_key_padding_mask_shape_and_none_when_unpadded():
    assert key_padding_mask(None) is None
    assert key_padding_mask(torch.ones(2, 3, dtype=torch.long)) is None
    mask = key_padding_mask(torch.tensor([[0, 1, 1], [1, 1, 1]]))
    assert mask.shape == (2, 1, 1, 3) and mask.dtype == torch.bool
    assert mask[0, 0, 0].tolist() == [False, True, True]


def test_masked_keys_get_no_weight():
    q = torch.randn(1, 1, 2, 4)
    k = torch.randn(1, 1, 3, 4)
    v = torch.tensor([[[[100.0] * 4, [1.0] * 4, [3.0] * 4]]])
    out = sdpa_attention(q, k, v, key_padding_mask(torch.tensor([[0, 1, 1]])))
    assert (out >= 1.0).all() and (out <= 3.0).all()  # the value 100 behind padding never leaks


def test_grouped_query_heads_repeat():
    q = torch.randn(1, 4, 3, 8)
    k, v = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)
    grouped = sdpa_attention(q, k, v, None)
    full = sdpa_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), None)
    torch.testing.assert_close(grouped, full)


def test_unknown_backend_is_named():
    import pytest

    from dllm.errors import ConfigError

    assert attention_backend("sdpa") is sdpa_attention
    with pytest.raises(ConfigError, match="unknown attention backend 'spda' — did you mean 'sdpa'"):
        attention_backend("spda")
