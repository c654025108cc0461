import torch

from dllm.models.base import align_shifted


def test_align_shifted_reads_the_position_before_each_token():
    logits = torch.arange(5.0)[None, :, None]  # position i's logits hold i
    assert align_shifted(logits).flatten().tolist() == [0, 0, 1, 2, 3]  # token 0 reads position 0
    assert align_shifted(logits, 2).flatten().tolist() == [1, 2, 3]  # tokens 2..4, a view
    assert align_shifted(logits, 2).data_ptr() == logits[:, 1:].data_ptr()
