import torch

from dllm.models.attention import attention_backend, sdpa_attention
from dllm.models.masks import combine


def test_masked_keys_get_no_weight():
    q = torch.randn(1, 1, 2, 4)
    k = torch.randn(1, 1, 3, 4)
    v = torch.tensor([[[[100.0] * 4, [1.0] * 4, [3.0] * 4]]])
    out = sdpa_attention(q, k, v, combine(None, torch.tensor([[0, 1, 1]])))
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
