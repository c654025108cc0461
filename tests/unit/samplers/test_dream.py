import pytest
import torch

from dllm.errors import ConfigError
from dllm.samplers.dream import DreamSampler, dream_attention, filter_logits, sample_with_confidence


def test_padded_batches_count_positions_over_real_tokens():
    mask, positions = dream_attention(torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]), gen_length=2)
    assert positions.tolist() == [[1, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]]
    assert mask.shape == (2, 1, 6, 6)
    assert not mask[0, 0, 0].any() and not mask[0, 0, :, 0].any()  # padding neither sees nor is seen
    assert mask[0, 0, 2, 2:].all()
    assert dream_attention(torch.ones(2, 3, dtype=torch.long), 2) == (None, None)


def test_confidences_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0]]).log_softmax(-1)
    probs = logits.softmax(-1)[0]
    confidence, token = sample_with_confidence(logits, 0.0, None, None, "maskgit_plus", None)
    assert token.item() == 0 and confidence.item() == pytest.approx(probs[0].item())
    margin, _ = sample_with_confidence(logits, 0.0, None, None, "topk_margin", None)
    assert margin.item() == pytest.approx((probs[0] - probs[1]).item())
    entropy, _ = sample_with_confidence(logits, 0.0, None, None, "entropy", None)
    assert entropy.item() == pytest.approx((probs * probs.log()).sum().item(), abs=1e-6)


def test_top_p_keeps_the_top_token_and_top_k_keeps_k():
    logits = torch.tensor([[0.0, 0.1, 5.0]])
    assert (filter_logits(logits, top_p=0.5, top_k=None) > -1e30).tolist() == [[False, False, True]]
    assert (filter_logits(logits, top_p=None, top_k=2) > -1e30).tolist() == [[False, True, True]]


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="alg must be origin, maskgit_plus, topk_margin or entropy"):
        DreamSampler(alg="low_confidence")
    with pytest.raises(ConfigError, match=r"top_p must be in \(0, 1\]"):
        DreamSampler(top_p=0.0)
    with pytest.raises(ConfigError, match="use sampler=sdar for block models"):
        DreamSampler().check_gen_length(8, model_block_size=4)


def test_the_lm_head_runs_on_the_completion_positions_only():
    """Over a real vocabulary the head is most of a forward: each step of the Dream decoder asks
    for the logits of the completion's positions only (a ragged, left-padded batch of prompts of
    5 and 9 tokens; 6 generated), and the tokens are those of the whole-sequence computation."""
    import dllm

    torch.manual_seed(0)
    model = dllm.load_model("dream_tiny").eval()
    rows = []
    model.lm_head.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[1]))
    prompts = torch.tensor([[0, 0, 0, 0, 11, 12, 13, 14, 15], [21, 22, 23, 24, 25, 26, 27, 28, 29]])
    mask = (torch.arange(9) >= torch.tensor([[4], [0]])).long()
    out = DreamSampler(alg="entropy").generate(model, prompts, mask, gen_length=6)
    assert rows and set(rows) == {6}

    class WholeSequence(torch.nn.Module):  # the same model without `logits_slice`: every position's logits
        def __init__(self, inner):
            super().__init__()
            self.inner, self.mask_token_id, self.shift_logits = inner, inner.mask_token_id, inner.shift_logits
            self.block_size, self.config = None, inner.config

        def forward(self, input_ids, attention_mask=None, position_ids=None):
            return self.inner(input_ids, attention_mask=attention_mask, position_ids=position_ids)

    rows.clear()
    whole = DreamSampler(alg="entropy").generate(WholeSequence(model), prompts, mask, gen_length=6)
    assert set(rows) == {15} and torch.equal(whole.sequences, out.sequences)
