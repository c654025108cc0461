"""SFT packing: packed rows give the unpacked loss and gradients (float32 rounding), documents
never see each other, and `algorithm.pack` composes and is refused where it cannot work."""

import pytest
import torch

import dllm
from dllm.algorithms.denoise import noisy_outputs
from dllm.algorithms.sft import SFT, collate_sft, pack_sft
from dllm.config import compose
from dllm.data.base import Example
from dllm.errors import ConfigError
from dllm.models.masks import document_positions
from dllm.run import plan

GEN_LENGTH = 9
# Skewed lengths: prompts of 2 to 30 characters, responses of 0 to 8 (EOS fill to 9); sdar_tiny's
# blocks (4) split most prompts' last block with the response.
EXAMPLES = [
    Example("1=", "1"),
    Example("123456789+987654321+111111111=", "12222222"),
    Example("2+2=", "4"),
    Example("3+4=", ""),
    Example("5+5=", "10"),
    Example("999999+999999=", "1999998"),
    Example("7=", "12345678"),
]
LOSS_RTOL, GRAD_RTOL, GRAD_ATOL = 2e-6, 1e-5, 1e-7  # float32 rounding: sums in another order


def model_named(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return dllm.load_model(name).eval()


def loss_and_grads(model, sft, batch, seed: int) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad()
    loss = sft.loss(model, batch, torch.Generator().manual_seed(seed)).loss
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name", ["llada_tiny", "dream_tiny", "sdar_tiny"])
@pytest.mark.parametrize("masking", ["count", "rate"])
def test_packed_loss_and_gradients_equal_the_unpacked(tokenizer, name, masking):
    model, sft = model_named(name), SFT(masking=masking)
    unpacked = collate_sft(tokenizer, EXAMPLES, GEN_LENGTH)
    packed = pack_sft(unpacked, range(len(EXAMPLES)))
    assert packed.input_ids.shape[1] == unpacked.input_ids.shape[1]  # rows of the longest example
    assert packed.input_ids.shape[0] == 4  # 7 examples in 4 rows
    assert int(packed.attention_mask.sum()) == int(unpacked.attention_mask.sum())  # every token, once
    for seed in range(3):
        loss, grads = loss_and_grads(model, sft, unpacked, seed)
        packed_loss, packed_grads = loss_and_grads(model, sft, packed, seed)
        assert packed_loss == pytest.approx(loss, rel=LOSS_RTOL)
        for grad, packed_grad in zip(grads, packed_grads):
            torch.testing.assert_close(packed_grad, grad, rtol=GRAD_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize("pack_length", [None, 64])
def test_a_process_share_packed_equals_its_unpacked_rows(tokenizer, pack_length):
    # On several processes each packs its own examples; noise is drawn for the whole micro-batch.
    model, sft = model_named("sdar_tiny"), SFT()
    unpacked = collate_sft(tokenizer, EXAMPLES, GEN_LENGTH)
    mine = range(2, 6)
    packed = pack_sft(unpacked, mine, pack_length)
    assert sorted(set(packed.document_ids[packed.document_ids >= 0].tolist())) == list(mine)
    assert packed.input_ids.shape == (1 if pack_length else 2, pack_length or unpacked.input_ids.shape[1])
    loss, grads = loss_and_grads(model, sft, unpacked.rows(mine.start, mine.stop), 4)
    packed_loss, packed_grads = loss_and_grads(model, sft, packed, 4)
    assert packed_loss == pytest.approx(loss, rel=LOSS_RTOL)
    for grad, packed_grad in zip(grads, packed_grads):
        torch.testing.assert_close(packed_grad, grad, rtol=GRAD_RTOL, atol=GRAD_ATOL)


def test_two_processes_packing_their_shares_average_to_the_one_process_loss(tokenizer):
    import random

    from dllm.algorithms.base import TrainContext
    from dllm.data.addition import AdditionTask

    def first_micro_batch(sft, micro, rank, world):
        ctx = TrainContext(
            model, tokenizer, AdditionTask(), None, None, micro, random.Random(0), torch.Generator(),
            torch.device("cpu"), rank=rank, world_size=world,
        )  # fmt: skip
        return next(sft.micro_batches(ctx, 1))

    model = model_named("sdar_tiny")
    whole = first_micro_batch(SFT(), 8, 0, 1)
    expected = SFT().loss(model, whole, torch.Generator().manual_seed(3)).loss.item()
    parts = [first_micro_batch(SFT(pack=True, pack_length=40), 4, rank, 2) for rank in range(2)]
    assert [sorted(set(p.document_ids[p.document_ids >= 0].tolist())) for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert all(p.input_ids.shape[0] < 4 for p in parts)
    losses = [SFT(pack=True).loss(model, p, torch.Generator().manual_seed(3)).loss.item() for p in parts]
    assert sum(losses) / 2 == pytest.approx(expected, rel=LOSS_RTOL)  # DDP's mean over processes


def test_documents_keep_their_eos_filled_responses_and_their_noise(tokenizer):
    sft = SFT()
    unpacked = collate_sft(tokenizer, EXAMPLES, GEN_LENGTH)
    packed = pack_sft(unpacked, range(len(EXAMPLES)), 40)
    _, masked, _ = sft.noise(unpacked, 2, torch.Generator().manual_seed(1))
    _, packed_masked, _ = sft.noise(packed, 2, torch.Generator().manual_seed(1))
    eos = tokenizer.eos_token_id
    for example in range(len(EXAMPLES)):
        own = packed.document_ids == example
        response = own & packed.response_mask.bool()
        assert int(response.sum()) == GEN_LENGTH  # the EOS fill is response, as unpacked
        real = unpacked.attention_mask[example].bool()
        assert packed.input_ids[own].tolist() == unpacked.input_ids[example, real].tolist()
        assert document_positions(packed.document_ids)[own].tolist() == list(range(int(real.sum())))
        assert packed.input_ids[response].tolist()[-1] == eos
        assert packed_masked[own].tolist() == masked[example, real].tolist()
    assert (packed.document_ids[packed.attention_mask == 0] == -1).all()
    assert not packed_masked[packed.response_mask == 0].any()


@pytest.mark.parametrize("name, block_size", [("llada_tiny", None), ("dream_tiny", None), ("sdar_tiny", 4)])
def test_documents_never_attend_across_each_other(tokenizer, name, block_size):
    model = model_named(name)
    packed = pack_sft(collate_sft(tokenizer, EXAMPLES, GEN_LENGTH), range(len(EXAMPLES)))
    documents = packed.document_ids
    row = int(documents[:, 1:].ne(documents[:, :-1]).sum(1).argmax())  # the row with the most documents
    first = int(documents[row, 0])
    perturbed = packed.input_ids.clone()
    perturbed[documents == first] = tokenizer.convert_tokens_to_ids("7")

    def logits(ids):
        with torch.no_grad():
            return noisy_outputs(model, ids, ids, packed.attention_mask, block_size, document_ids=documents)

    before, after = logits(packed.input_ids), logits(perturbed)
    others = (documents != first) & (documents >= 0)
    if model.shift_logits:  # a document's first token is read at the position before it: a prompt's, never scored
        others &= document_positions(documents) > 0
    assert others[row].any()
    torch.testing.assert_close(after[others], before[others], rtol=0, atol=1e-6)
    assert not torch.allclose(after[documents == first], before[documents == first], atol=1e-3)


def test_packing_refuses_an_example_longer_than_the_row(tokenizer):
    with pytest.raises(ConfigError, match="does not fit sft.pack_length=20; raise sft.pack_length"):
        pack_sft(collate_sft(tokenizer, EXAMPLES, GEN_LENGTH), range(len(EXAMPLES)), 20)


TINY = ["experiment=addition_tiny", "trainer.max_steps=1", "trainer.batch_size=8", "task.num_eval=4"]


def first_step(overrides: list[str], run_dir) -> dict:
    from dllm.run import seed_everything
    from dllm.trainer import Trainer

    run = plan(compose([*TINY, *overrides]))
    seed_everything(0)
    return Trainer(run.components(), run.stages, run_dir, seed=0)._optimizer_step()


@pytest.mark.parametrize("model", ["llada_tiny", "sdar_tiny"])
def test_dllm_train_first_step_loss_is_the_same_packed(tmp_path, model):
    assert plan(compose([*TINY, "algorithm.pack=true"])).algorithm.pack is True
    padded = first_step([f"model={model}"], tmp_path / "padded")
    packed = first_step([f"model={model}", "algorithm.pack=true", "algorithm.pack_length=48"], tmp_path / "packed")
    assert packed["loss"] == pytest.approx(padded["loss"], rel=LOSS_RTOL)
    assert packed["grad_norm"] == pytest.approx(padded["grad_norm"], rel=1e-5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algorithm.pack_length=64"], r"sft.pack_length=64 needs sft.pack=true and a positive length"),
        (["algorithm.pack=true", "algorithm.pack_length=0"], r"sft.pack_length=0 needs sft.pack=true"),
        (["algorithm.pack=true", "algorithm.pack_length=5"], r"sft.pack_length \(5\) must exceed task.gen_length"),
    ],
)
def test_bad_packing_options_are_refused_at_plan_time(overrides, message):
    with pytest.raises(ConfigError, match=message):
        plan(compose([*TINY, *overrides]))
