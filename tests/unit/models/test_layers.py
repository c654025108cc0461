import math

import torch

from dllm.models.layers import RMSNorm, RotaryEmbedding, apply_rotary, swiglu


def test_rotary_angles_by_hand():
    cos, sin = RotaryEmbedding(head_dim=4, theta=100.0)(torch.tensor([0, 1, 2]))
    assert cos.shape == (1, 1, 3, 4)
    # inv_freq = [1, 100^-0.5 = 0.1]; layout [f0, f1, f0, f1]
    expected = torch.tensor([2 * 1.0, 2 * 0.1, 2 * 1.0, 2 * 0.1])
    torch.testing.assert_close(cos[0, 0, 2], expected.cos())
    torch.testing.assert_close(sin[0, 0, 2], expected.sin())


def test_rotary_tables_equal_the_direct_computation_bit_for_bit():
    # The cached tables are looked up by position, grown past their first 256 positions; each
    # entry must be exactly cos / sin of float32 position x frequency, as computed per forward.
    rotary = RotaryEmbedding(head_dim=64, theta=10000.0)
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, 64, 2, dtype=torch.float32) / 64))
    for positions in (torch.tensor([[0, 5, 3], [7, 1, 2]]), torch.randint(0, 3000, (4, 37)), torch.arange(255, 260)):
        cos, sin = rotary(positions)
        rows = positions if positions.dim() == 2 else positions[None]
        freqs = rows.float()[..., None] * inv_freq
        angles = torch.cat([freqs, freqs], dim=-1)[:, None]
        assert cos.shape == angles.shape
        assert torch.equal(cos, angles.cos()) and torch.equal(sin, angles.sin())
    assert rotary._tables[torch.device("cpu")][0].shape[0] > 256  # grown from the first table


def test_apply_rotary_rotates_half_pairs():
    cos, sin = RotaryEmbedding(head_dim=2, theta=10000.0)(torch.tensor([1]))
    q = torch.tensor([[[[1.0, 0.0]]]])
    rotated, _ = apply_rotary(q, q, cos, sin)
    torch.testing.assert_close(rotated[0, 0, 0], torch.tensor([math.cos(1.0), math.sin(1.0)]))


def test_rotary_keeps_dtype():
    cos, sin = RotaryEmbedding(8, 10000.0)(torch.arange(3))
    q = torch.randn(1, 2, 3, 8, dtype=torch.bfloat16)
    assert apply_rotary(q, q, cos, sin)[0].dtype == torch.bfloat16


def test_rms_norm_and_swiglu_by_hand():
    norm = RMSNorm(2, eps=0.0)
    torch.testing.assert_close(norm(torch.tensor([[3.0, 4.0]])), torch.tensor([[3.0, 4.0]]) / math.sqrt(12.5))
    gate, up, down = (torch.nn.Linear(1, 1, bias=False) for _ in range(3))
    for layer, weight in ((gate, 1.0), (up, 2.0), (down, 3.0)):
        torch.nn.init.constant_(layer.weight, weight)
    x = torch.tensor([[1.0]])
    torch.testing.assert_close(swiglu(x, gate, up, down), torch.tensor([[3 * 2 * (1 / (1 + math.exp(-1)))]]))
