"""What the tests against recorded reference outputs share: the wrapper the recordings' models
went through, and the marking of recorded cases whose reference run went through a behaviour
dllm does not copy."""

import pytest
import torch


class NeverPredictsMask(torch.nn.Module):
    """Trained models never predict the mask token; the recordings made the random fixture models
    behave the same way (mask logit -1e4 after each forward), and so does this wrapper. Everything
    else passes through: the forward's arguments (cache ones included), `block_size`, `shift_logits`."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.mask_token_id, self.config = inner, inner.mask_token_id, inner.config
        self.shift_logits, self.block_size = inner.shift_logits, inner.block_size

    def forward(self, input_ids, **kwargs):
        out = self.inner(input_ids, **kwargs)
        out.logits[..., self.mask_token_id] = -1e4
        return out


def case_id(case):
    skip = {"expected", "reference_quirks", "nfe", "gen_length", "alg", "steps", "capped", "ragged_group"}
    return "-".join(f"{k}={v}" for k, v in case.items() if k not in skip and v is not None)


def marked(cases, differences):
    """`cases` as pytest params: a strict xfail, with its reasons, where the reference ran through a
    quirk in `differences` (name -> reason), so that it must be unmarked once dllm copies it."""
    params = []
    for case in cases:
        reasons = [differences[q] for q in case["reference_quirks"] if q in differences]
        marks = [pytest.mark.xfail(strict=True, reason="; ".join(reasons))] if reasons else []
        params.append(pytest.param(case, marks=marks, id=case_id(case)))
    return params
