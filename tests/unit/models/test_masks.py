import pytest
import torch

from dllm.errors import ConfigError
from dllm.models.masks import (
    block_causal_mask,
    block_diffusion_mask,
    check_block_size,
    combine,
    forward_mask,
    row_positions,
)

T, F = True, False


def test_block_diffusion_mask_two_blocks_by_hand():
    # L = 4, block 2: noisy n0 n1 | n2 n3, then clean c0 c1 | c2 c3
    expected = torch.tensor(
        [
            # n0 n1 n2 n3 c0 c1 c2 c3
            [T, T, F, F, F, F, F, F],  # n0: its own noisy block
            [T, T, F, F, F, F, F, F],  # n1
            [F, F, T, T, T, T, F, F],  # n2: its own noisy block + clean block 0
            [F, F, T, T, T, T, F, F],  # n3
            [F, F, F, F, T, T, F, F],  # c0: clean blocks <= 0
            [F, F, F, F, T, T, F, F],  # c1
            [F, F, F, F, T, T, T, T],  # c2: clean blocks <= 1
            [F, F, F, F, T, T, T, T],  # c3
        ]
    )
    assert torch.equal(block_diffusion_mask(4, 2), expected)


def test_block_diffusion_mask_without_a_noisy_prompt():
    # L = 4, block 2, the prompt is block 0: only n2 n3 are copied noisy
    full = block_diffusion_mask(4, 2)
    keep = torch.tensor([2, 3, 4, 5, 6, 7])
    assert torch.equal(block_diffusion_mask(4, 2, noisy_from=2), full[keep][:, keep])


def test_block_diffusion_mask_with_packed_documents():
    # two documents of 2 tokens, block size 2: nothing crosses documents; each is one block
    mask = block_diffusion_mask(4, 2, document_ids=torch.tensor([0, 0, 1, 1]))
    assert torch.equal(mask[2, :4], torch.tensor([F, F, T, T]))  # n2 sees only its own noisy block
    assert torch.equal(mask[2, 4:], torch.tensor([F, F, F, F]))  # no clean block before it in its document
    assert torch.equal(mask[6, 4:], torch.tensor([F, F, T, T]))  # c2 sees its own clean block only
    # blocks restart at a document: documents of 3 and 1 tokens, block size 2
    mask = block_diffusion_mask(4, 2, document_ids=torch.tensor([0, 0, 0, 1]))
    assert mask[2, 4] and mask[2, 5] and not mask[1, 2]  # n2 is doc 0's second block


def test_block_causal_mask_with_absolute_positions():
    mask = block_causal_mask(torch.arange(4), torch.arange(4), block_size=2)
    assert mask.tolist() == [[T, T, F, F], [T, T, F, F], [T, T, T, T], [T, T, T, T]]
    after_cache = block_causal_mask(torch.tensor([4, 5]), torch.arange(6), block_size=2)
    assert after_cache.all()


def test_combine_with_padding():
    structure = block_causal_mask(torch.arange(3), torch.arange(3), 1)
    padding = torch.tensor([[0, 1, 1], [1, 1, 1]])
    mask = combine(structure, padding)
    assert mask.shape == (2, 1, 3, 3)
    assert mask[0, 0, 2].tolist() == [F, T, T] and mask[1, 0, 2].tolist() == [T, T, T]
    assert combine(None, torch.ones(2, 3)) is None
    assert combine(None, padding)[0, 0, 0].tolist() == [F, T, T]


def test_block_size_must_divide():
    check_block_size(8, 4)
    with pytest.raises(ConfigError, match=r"block_size \(3\) must divide the sequence length \(8\)"):
        check_block_size(8, 3)


def test_row_positions_and_per_row_block_masks_ignore_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    positions = row_positions(mask)
    assert positions.tolist() == [[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]
    per_row = block_diffusion_mask(6, 2, noisy_from=2, positions=positions)
    assert per_row.shape == (2, 10, 10)
    assert torch.equal(per_row[1], block_diffusion_mask(6, 2, noisy_from=2))
    # row 0 is the 4-token sequence shifted right by 2: its real part is the unpadded mask
    alone = block_diffusion_mask(4, 2)  # [x_t ; x_0] of the 4 real tokens
    real = torch.tensor([0, 1, 2, 3, 6, 7, 8, 9])  # noisy copy of columns 2..5, then clean columns 2..5
    assert torch.equal(per_row[0][real][:, real], alone)
    causal = block_causal_mask(positions, positions, 2)
    assert torch.equal(causal[0, 2:, 2:], block_causal_mask(torch.arange(4), torch.arange(4), 2))


def test_forward_mask_of_one_block_over_its_cache_restricts_keys_only():
    # blocks of 4, queries 8..11 (one block) after 8 cached keys: every key is in an earlier or the same block
    assert forward_mask(None, 8, 4, 12, 4, torch.device("cpu")) is None
    padding = torch.tensor([[1] * 12, [0, 0, 0, 0] + [1] * 8])
    mask = forward_mask(padding, 8, 4, 12, 4, torch.device("cpu"))
    assert mask.shape == (2, 1, 1, 12) and torch.equal(mask[:, 0, 0], padding.bool())
    # queries 6..9 span two blocks: the block-causal structure stays
    mask = forward_mask(None, 6, 4, 12, 4, torch.device("cpu"))
    expected = torch.arange(12)[None, :] // 4 <= torch.arange(6, 10)[:, None] // 4
    assert mask.shape == (1, 1, 4, 12) and torch.equal(mask[0, 0], expected)
