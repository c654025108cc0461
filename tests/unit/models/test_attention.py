import pytest
import torch

from dllm.errors import ConfigError
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
    assert attention_backend("sdpa") is sdpa_attention
    with pytest.raises(ConfigError, match="unknown attention backend 'spda' — did you mean 'sdpa'"):
        attention_backend("spda")


@pytest.mark.parametrize("preset", ["llada_tiny", "dream_tiny", "sdar_tiny"])
def test_flex_backend_matches_sdpa_in_inference(preset):
    import dllm

    torch.manual_seed(0)
    sdpa_model = dllm.load_model(preset).eval()
    flex_model = dllm.load_model(preset, attn_backend="flex").eval()
    flex_model.load_state_dict(sdpa_model.state_dict())
    ids = torch.randint(4, 100, (2, 8))
    padding = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8])
    with torch.no_grad():
        torch.testing.assert_close(
            flex_model(ids, attention_mask=padding).logits[:, 2:],
            sdpa_model(ids, attention_mask=padding).logits[:, 2:],
            atol=1e-5,
            rtol=1e-5,
        )
        torch.testing.assert_close(flex_model(ids).logits, sdpa_model(ids).logits, atol=1e-5, rtol=1e-5)


def test_flex_refuses_training_on_the_cpu():
    q = torch.randn(1, 2, 4, 8, requires_grad=True)
    with pytest.raises(ConfigError, match="no backward on the CPU"):
        attention_backend("flex")(q, q, q, None)


def test_flash_attn_without_the_package_names_the_install():
    pytest.importorskip("torch")
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"pip install 'dllm\[gpu\]'"):
            attention_backend("flash_attn")(
                torch.randn(1, 1, 2, 8), torch.randn(1, 1, 2, 8), torch.randn(1, 1, 2, 8), None
            )
