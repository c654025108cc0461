"""A canvas given to `Sampler.generate` (inpainting): its tokens stay as given, every sampler decodes the rest."""

import pytest
import torch

import dllm
from tests.unit.algorithms.rl_helpers import tiny
from tests.unit.algorithms.test_rl import SAMPLERS

CASES = [(family, *sampler) for family, samplers in sorted(SAMPLERS.items()) for sampler in samplers]


@pytest.mark.parametrize("family, name, options", CASES)
@pytest.mark.parametrize("max_batch_rows", [None, 1])
def test_canvas_tokens_stay_fixed_and_read_step_minus_one(family, name, options, max_batch_rows, tokenizer):
    model = tiny(family)
    sampler = dllm.build_sampler(name, **options)
    batch = tokenizer(["12+345=", "7+8="], padding=True, return_tensors="pt")  # ragged: odd prompt lengths
    mask = model.mask_token_id
    digit = tokenizer.convert_tokens_to_ids("3")
    canvas = torch.full((2, 8), mask)
    canvas[0, [0, 1, 5]] = digit  # row 0: columns 0, 1 and 5 given; row 1: column 7
    canvas[1, 7] = digit
    out = sampler.generate(model, batch["input_ids"], batch["attention_mask"], 8, torch.Generator().manual_seed(0),
                           max_batch_rows=max_batch_rows, canvas=canvas)  # fmt: skip
    given = canvas != mask
    assert torch.equal(out.raw_completions[given], torch.full((4,), digit))
    assert torch.equal(out.step_map < 0, given)  # -1 exactly where given, a real step elsewhere
    assert not bool((out.raw_completions[~given] == mask).all())  # the rest was decoded


def test_a_canvas_of_the_wrong_shape_is_refused(tokenizer):
    model = tiny("llada_tiny")
    batch = tokenizer(["7+8="], return_tensors="pt")
    with pytest.raises(dllm.DllmError, match=r"canvas shape \(1, 4\) must be \[batch, gen_length\] = \(1, 8\)"):
        dllm.build_sampler("llada", steps=8, block_length=4).generate(model, batch["input_ids"], gen_length=8,
                                                      canvas=torch.zeros(1, 4, dtype=torch.long))  # fmt: skip
