"""The scored-positions path of `denoising_outputs` (the head at the scored positions only, log-probs
in chunks) against the plain computation (whole logits, whole log-softmax): equal to float32
rounding (atol 1e-5 on log-probs, rel 1e-5 on gradients), for every family, ragged left-padded
prompts, EOS-padded responses, a block model's prompt ending inside a block, rows scoring nothing."""

import pytest
import torch

import dllm
from dllm.algorithms.denoise import denoising_outputs
from dllm.models import chosen
from dllm.models.base import load_value_model

PROMPT, LENGTH = 7, 26  # sdar_tiny's blocks are 4 wide: every row's prompt ends inside a block


def batch(model: torch.nn.Module, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(noisy, clean, attention_mask, scored [B, L - PROMPT]): 4 rows with 7, 5, 4 and 6 real prompt
    tokens (left padding), responses ending in EOS padding, ~half of each response masked and
    scored — the last row scores nothing."""
    generator = torch.Generator().manual_seed(seed)
    eos = model.config.eos_token_id
    clean = torch.randint(3, model.config.vocab_size, (4, LENGTH), generator=generator)
    attention_mask = torch.ones_like(clean)
    for row, real in enumerate((7, 5, 4, 6)):
        attention_mask[row, : PROMPT - real] = 0
        clean[row, : PROMPT - real] = eos
    clean[:, -5:] = eos  # EOS-padded responses (scored like any token, as SFT does)
    clean[1, -9:] = eos
    scored = torch.rand(4, LENGTH - PROMPT, generator=generator) < 0.5
    scored[0, -1] = True  # a scored EOS at the last position
    scored[3] = False
    noisy = clean.clone()
    noisy[:, PROMPT:][scored] = model.mask_token_id
    return noisy, clean, attention_mask, scored


def outputs_and_gradients(model, inputs, field: str, scored: torch.Tensor | None) -> tuple[torch.Tensor, list]:
    noisy, clean, attention_mask, chosen_positions = inputs
    model.zero_grad()
    out = denoising_outputs(model, noisy, clean, attention_mask, model.block_size, PROMPT, field, scored)
    weights = torch.linspace(0.5, 2.0, out.numel()).view(out.shape)
    (torch.where(chosen_positions, out, 0.0) * weights).sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


def assert_equal_to_rounding(model, field: str) -> None:
    inputs = batch(model)
    scored = inputs[3]
    plain, plain_grads = outputs_and_gradients(model, inputs, field, None)
    read, grads = outputs_and_gradients(model, inputs, field, scored)
    torch.testing.assert_close(read[scored], plain[scored], atol=1e-5, rtol=0)
    assert torch.equal(read[~scored], torch.zeros_like(read[~scored]))  # unscored: 0, never computed
    assert len(grads) == len(plain_grads) > 0
    for grad, expected in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()) + 1e-12)


@pytest.mark.parametrize("name", ["llada_tiny", "dream_tiny", "sdar_tiny"])
def test_scored_log_probs_and_gradients_equal_the_plain_computation(name):
    torch.manual_seed(0)
    assert_equal_to_rounding(dllm.load_model(name), "logits")


@pytest.mark.parametrize("name", ["llada_tiny", "sdar_tiny"])
def test_scored_values_equal_the_plain_computation(name):
    torch.manual_seed(0)
    model = load_value_model(name)
    torch.nn.init.normal_(model.value_head.weight)  # a fresh head is 0 everywhere: give it something to say
    assert_equal_to_rounding(model, "values")


@pytest.mark.parametrize("name", ["llada_tiny", "sdar_tiny"])
def test_chunks_smaller_than_the_scored_positions_give_the_same_numbers(name, monkeypatch):
    torch.manual_seed(0)
    model = dllm.load_model(name)
    inputs = batch(model)
    whole, whole_grads = outputs_and_gradients(model, inputs, "logits", inputs[3])
    assert int(inputs[3].sum()) > 3 * 4
    monkeypatch.setattr(chosen, "CHUNK_BYTES", 3 * 4 * model.config.vocab_size)  # 3 positions
    read, grads = outputs_and_gradients(model, inputs, "logits", inputs[3])
    torch.testing.assert_close(read, whole, atol=1e-6, rtol=0)
    for grad, expected in zip(grads, whole_grads, strict=True):
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()) + 1e-12)


def test_the_head_runs_at_the_scored_positions_only_and_a_chunk_at_a_time(monkeypatch):
    model = dllm.load_model("llada_tiny")
    noisy, clean, attention_mask, scored = batch(model)
    monkeypatch.setattr(chosen, "CHUNK_BYTES", 5 * 4 * model.config.vocab_size)  # 5 positions
    monkeypatch.setenv("DLLM_FUSED_HEAD", "0")  # the pure path's chunks, also where the fused kernel runs
    head, rows_seen = model.output_logits, []

    def recording_head(hidden):
        rows_seen.append(hidden.shape[0])
        return head(hidden)

    model.output_logits = recording_head
    out = denoising_outputs(model, noisy, clean, attention_mask, None, PROMPT, "logits", scored)
    read = int(scored.sum(1).max())  # every row padded to the longest row's count
    assert sum(rows_seen) == 4 * read and max(rows_seen) == 5
    rows_seen.clear()
    out.sum().backward()  # the backward recomputes each chunk's logits, one chunk at a time
    assert sum(rows_seen) == 4 * read and max(rows_seen) == 5


def test_chosen_log_probs_equal_a_whole_log_softmax():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50)
    hidden = torch.randn(3, 7, 8, requires_grad=True)
    targets = torch.randint(0, 50, (3, 7))
    read = chosen.chosen_log_probs(head, hidden, targets, 50, chunk=4)
    whole = head(hidden).log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    torch.testing.assert_close(read, whole, atol=1e-6, rtol=0)
    (grad,) = torch.autograd.grad(read.sum(), hidden)
    (expected,) = torch.autograd.grad(whole.sum(), hidden)
    torch.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-5)
