"""Sampling a few rows at a time (`row_chunks`) and drawing a row's noise in pieces
(`RowRandomness`) change no token: every decoder decodes the same with a chunk budget of one
byte (one row per chunk, noise drawn one position at a time, on the CPU) as with the whole batch
at once, which the reference tests pin to the references token for token."""

import pytest
import torch

import dllm
import dllm.samplers.lanes
import dllm.samplers.tokens
from dllm.samplers.lanes import RowRandomness, row_generators
from dllm.samplers.tokens import row_chunks
from tests.unit.algorithms.rl_helpers import EarlyEOS
from tests.unit.samplers.test_lanes import CASES, PROMPTS

POLICIES = {
    "margin": ("llada_tiny", "diffusion", {"steps": 8, "block_length": 4, "score": "margin", "sampling": "gumbel"}),
    "entropy threshold": ("llada_tiny", "diffusion", {"block_length": 4, "score": "entropy", "selection": "threshold",
                                                      "threshold": 0.5}),
    "entropy bounded": ("sdar_tiny", "sdar", {"remasking_strategy": "entropy_bounded", "eb_threshold": 0.5}),
    "rcr eoser": ("llada_tiny", "diffusion", {"steps": 8, "block_length": 4, "rcr": True, "sampling": "gumbel",
                                              "eos_min_gamma": 0.5}),
    "top_k top_p": ("sdar_tiny", "sdar", {"top_k": 5, "top_p": 0.9}),
}  # fmt: skip


def decode(case: tuple, temperature: float, per_row: bool):
    preset, name, options = case
    torch.manual_seed(0)
    model = EarlyEOS(dllm.load_model(preset).eval(), bias=2.0)
    sampler = dllm.build_sampler(name, temperature=temperature, **options)
    batch = dllm.tokenizer.build_char_tokenizer()(PROMPTS, padding=True, return_tensors="pt")
    seed = torch.Generator().manual_seed(5)
    generator = row_generators(seed, len(PROMPTS)) if per_row else seed
    return sampler.generate(model, batch["input_ids"], batch["attention_mask"], 16, generator)


@pytest.mark.parametrize(
    "temperature, per_row", [(0.0, True), (1.0, True), (1.0, False)], ids=["greedy", "row generators", "one generator"]
)
@pytest.mark.parametrize("case", sorted(CASES) + sorted(POLICIES))
def test_a_chunk_at_a_time_decodes_the_same(case, temperature, per_row, monkeypatch):
    options = CASES.get(case) or POLICIES[case]
    whole = decode(options, temperature, per_row)
    monkeypatch.setattr(dllm.samplers.tokens, "CHUNK_BYTES", 1)
    monkeypatch.setattr(dllm.samplers.lanes, "CHUNK_BYTES", 1)
    chunked = decode(options, temperature, per_row)
    assert torch.equal(chunked.sequences, whole.sequences)
    assert torch.equal(chunked.raw_completions, whole.raw_completions)
    assert torch.equal(chunked.step_map, whole.step_map)


def test_row_chunks_cover_the_rows_within_the_budget(monkeypatch):
    monkeypatch.setattr(dllm.samplers.tokens, "CHUNK_BYTES", 1000)
    assert row_chunks(5, 60, 8) == [slice(0, 2), slice(2, 4), slice(4, 5)]  # 480 bytes a row: two fit
    assert row_chunks(3, 1000, 8) == [slice(0, 1), slice(1, 2), slice(2, 3)]  # a row over the budget: alone
    assert row_chunks(0, 10, 8) == []


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_window_drawn_in_pieces_is_the_window_of_one_draw(dtype, monkeypatch):
    """On the CPU, skipping and keeping positions piece by piece reads the same stream as one draw
    of the whole forward, and leaves the generator where that draw leaves it."""
    shapes, windows = [(9, 7), (5, 7)], [3, 1]

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(11)
        noise = RowRandomness(generator, 2).uniform([0, 1], shapes, windows, 4, dtype, torch.device("cpu"))
        return noise, torch.rand(3, generator=generator)

    whole, after_whole = draw()
    expected = torch.rand((9, 7), dtype=dtype, generator=torch.Generator().manual_seed(11))[3:7]
    assert torch.equal(whole[0], expected)
    monkeypatch.setattr(dllm.samplers.lanes, "CHUNK_BYTES", 2 * 7 * dtype.itemsize)  # two positions a piece
    pieces, after_pieces = draw()
    assert torch.equal(pieces, whole) and torch.equal(after_pieces, after_whole)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("alg", ["origin", "maskgit_plus", "topk_margin", "entropy"])
def test_dream_a_chunk_at_a_time_decodes_the_same(alg, temperature, monkeypatch):
    case = ("dream_tiny", "dream", {"alg": alg, "steps": 8, "top_p": 0.9})
    whole = decode(case, temperature, per_row=False)
    monkeypatch.setattr(dllm.samplers.tokens, "CHUNK_BYTES", 1)
    chunked = decode(case, temperature, per_row=False)
    assert torch.equal(chunked.sequences, whole.sequences)


def test_one_draw_over_every_row_stays_one_chunk(monkeypatch):
    """Off the CPU a shared generator's multinomial over all rows is one draw that pieces would not
    reproduce: those callers ask for one chunk, whatever the budget."""
    monkeypatch.setattr(dllm.samplers.tokens, "CHUNK_BYTES", 1)
    assert row_chunks(4, 10, 4, one_draw=True) == [slice(0, 4)]
    assert len(row_chunks(4, 10, 4)) == 4
