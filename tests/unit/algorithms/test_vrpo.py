"""VRPO and its dpo preset: the loss by hand, antithetic sampling's exact cancellation, the
preferences learnt on the shipped pairs, and the pairings refused."""

import json
import math
import random

import pytest
import torch

import dllm
from dllm.algorithms.base import TrainContext
from dllm.algorithms.sft import SFT, SFTBatch, collate_sft
from dllm.algorithms.vrpo import VRPO
from dllm.config import build_node, compose
from dllm.data.base import Example
from dllm.data.preference import SAMPLE_PAIRS
from dllm.data.readers import resolve_path
from dllm.errors import ConfigError
from dllm.trainer import Components, Stage, Trainer, TrainerConfig
from tests.conftest import ScriptedModel

MASK, EOS = 2, 1


def fixed_probabilities(probs: dict[int, float], vocab: int = 6):
    """A scripted denoiser predicting the same distribution at every position: `probs` for the
    named tokens, the rest of the mass shared by the others."""
    rest = (1 - sum(probs.values())) / (vocab - len(probs))
    logits = torch.tensor([probs.get(token, rest) for token in range(vocab)]).log()
    return ScriptedModel(lambda ids: logits.expand(*ids.shape, vocab).clone(), mask_token_id=MASK)


def one_pair_rows() -> SFTBatch:
    """One pair at budget 2: prompt [5]; chosen [3, EOS] twice, then rejected [4, EOS] twice."""
    responses = [[3, EOS], [3, EOS], [4, EOS], [4, EOS]]
    ids = torch.tensor([[5, *r] for r in responses])
    return SFTBatch(ids, torch.ones_like(ids), torch.tensor([[0, 1, 1]] * 4))


def noise_of(rows: SFTBatch, masked: list[list[int]], p_mask: list[float]):
    masked_t = torch.tensor([[0, *m] for m in masked], dtype=torch.bool)
    return rows.input_ids.masked_fill(masked_t, MASK), masked_t, torch.tensor(p_mask)


def test_the_loss_by_hand_on_one_pair():
    """Policy: p(3)=1/2, p(4)=1/4, p(EOS)=1/8; reference: p(3)=p(4)=1/4, p(EOS)=1/8. Each row's
    one-sample ELBO is the sum over its masked tokens of log p / p_mask."""
    algorithm = VRPO(beta=0.5, budget=2)
    algorithm.reference = fixed_probabilities({3: 1 / 4, 4: 1 / 4, EOS: 1 / 8})
    policy = fixed_probabilities({3: 1 / 2, 4: 1 / 4, EOS: 1 / 8})
    rows = one_pair_rows()
    # chosen: row 0 masks 3 (p 1/2), row 1 both (p 1); rejected: row 2 masks EOS, row 3 masks 4 (p 1/2)
    noise = noise_of(rows, [[1, 0], [1, 1], [0, 1], [1, 0]], [0.5, 1.0, 0.5, 0.5])
    ln2 = math.log(2)
    # policy:    chosen (2(-1) + (-1 - 3)) / 2 = -3 ln2;   rejected (2(-3) + 2(-2)) / 2 = -5 ln2
    # reference: chosen (2(-2) + (-2 - 3)) / 2 = -4.5 ln2; rejected (2(-3) + 2(-2)) / 2 = -5 ln2
    # score = 0.5 ((-3 + 4.5) - (-5 + 5)) ln2 = 0.75 ln2; loss = -log sigmoid(0.75 ln2) = log(1 + 2^-0.75)
    out = algorithm.loss_of(policy, rows, noise, noise)
    assert out.loss.item() == pytest.approx(math.log(1 + 2**-0.75), rel=1e-6)
    assert out.metrics["chosen_reward"].item() == pytest.approx(0.5 * 1.5 * ln2, rel=1e-6)
    assert out.metrics["rejected_reward"].item() == pytest.approx(0.0, abs=1e-6)
    assert out.metrics["reward_margin"].item() == pytest.approx(0.75 * ln2, rel=1e-6)
    assert out.metrics["preference_accuracy"].item() == 1.0
    # Without antithetic sampling the reference reads its own draw: here every token masked (p 1),
    # each row -2 - 3 = -5 ln2, so score = 0.5 ((-3 + 5) - (-5 + 5)) ln2 = ln2 and loss = log(3/2).
    own = noise_of(rows, [[1, 1]] * 4, [1.0] * 4)
    assert algorithm.loss_of(policy, rows, noise, own).loss.item() == pytest.approx(math.log(1.5), rel=1e-6)


def pair_context(model, tokenizer, micro=2, seed=0):
    task = dllm.build("task", "preference")
    return TrainContext(model, tokenizer, task, None, None, micro, random.Random(seed),
                        torch.Generator().manual_seed(seed), torch.device("cpu"), micro)  # fmt: skip


@pytest.mark.parametrize("family", ["llada_tiny", "sdar_tiny", "dream_tiny"])
def test_antithetic_sampling_cancels_the_reference_exactly_on_the_first_step(family, tokenizer):
    """Policy == reference and shared timesteps and masks: every score is exactly 0, so the first
    loss is log 2 whatever the draw (no variance from the ELBO estimates), and its gradient is
    -beta/2 x that of the policy's ELBO margin. Independent draws (dpo) leave a random score."""
    torch.manual_seed(0)
    model = dllm.load_model(family).train()
    log2 = torch.tensor(math.log(2), dtype=torch.float32)
    for seed in range(3):
        algorithm = VRPO(budget=2)
        ctx = pair_context(model, tokenizer, seed=seed)
        algorithm.start(ctx)
        batch = next(algorithm.micro_batches(ctx, 1))
        assert batch.rows.input_ids.shape[0] == 2 * 2 * 2  # 2 pairs x (chosen, rejected) x budget 2
        state = ctx.generator.get_state()
        out = algorithm.loss(model, batch, ctx.generator)
        assert out.loss.item() == log2.item() and out.metrics["reward_margin"].item() == 0.0
        # The gradient: log sigmoid'(0) = 1/2, so it is -beta/2 x that of the policy's ELBO margin.
        model.zero_grad()
        out.loss.backward()
        grad = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        replay = torch.Generator()
        replay.set_state(state)  # the very draw the loss made
        noise = algorithm.elbo.noise(batch.rows, model.mask_token_id, replay)
        elbos = algorithm.elbo_estimates(model, batch.rows, noise)
        (-algorithm.beta / 2 * (elbos[:, 0] - elbos[:, 1]).mean()).backward()
        for got, want in zip(grad, (p.grad for p in model.parameters())):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    dpo = dllm.build("algorithm", "dpo")
    ctx = pair_context(model, tokenizer)
    dpo.start(ctx)
    losses = {dpo.loss(model, next(dpo.micro_batches(ctx, 1)), ctx.generator).loss.item() for _ in range(3)}
    assert all(loss != log2.item() for loss in losses) and len(losses) == 3


def test_the_presets_keep_the_papers_settings():
    vrpo, dpo = build_node(compose(["algorithm=vrpo"]).algorithm), dllm.build("algorithm", "dpo")
    assert vars(dllm.build("algorithm", "vrpo")).keys() == vars(vrpo).keys()
    assert (vrpo.budget, vrpo.antithetic, vrpo.beta, vrpo.elbo.masking) == (8, True, 0.2, "count")
    assert (dpo.budget, dpo.antithetic, dpo.beta) == (1, False, 0.2)
    assert "budget 8 (8 timesteps x 1 mask), antithetic on" in vrpo.parts()


def held_out_gap(model, tokenizer, pairs, gen_length) -> float:
    """Mean masked-diffusion loss (SFT's, per token) of the rejected responses minus that of the
    chosen ones, at fixed draws: computed without any of VRPO's code."""

    def nll(which):
        examples = [Example(p.prompt, getattr(p, which)) for p in pairs for _ in range(8)]
        batch = collate_sft(tokenizer, examples, gen_length)
        with torch.no_grad():
            return SFT().loss(model, batch, torch.Generator().manual_seed(3)).loss.item()

    return nll("rejected") - nll("chosen")


@pytest.mark.parametrize("name, family", [("vrpo", "llada_tiny"), ("dpo", "llada_tiny"), ("vrpo", "sdar_tiny")])
def test_preferences_are_learnt_on_the_shipped_pairs(name, family, tokenizer, tmp_path):
    """From an untrained tiny model, 40 steps on 16 shipped pairs: the chosen responses become
    likelier than the rejected ones relative to the reference (measured by SFT's loss), and the
    logged margin turns positive. A sign error anywhere in the loss drives both negative."""
    train_file = tmp_path / "pairs.jsonl"
    train_file.write_text("".join(resolve_path(SAMPLE_PAIRS).read_text().splitlines(keepends=True)[:16]))
    task = dllm.build("task", "preference", train_file=str(train_file), num_eval=4)
    torch.manual_seed(0)
    model = dllm.load_model(family).train()
    algorithm = dllm.build("algorithm", name, **({"budget": 4} if name == "vrpo" else {}))
    config = TrainerConfig(max_steps=40, batch_size=8, lr=1e-3, weight_decay=0.0, warmup_steps=0, min_lr_ratio=1.0,
                           log_every=1, device="cpu", eval_batch_size=4)  # fmt: skip
    parts = Components(model, tokenizer, task, dllm.build_sampler("llada", steps=8, block_length=8),
                       dllm.build("reward", "exact_match"), algorithm)  # fmt: skip
    (tmp_path / "run").mkdir()
    Trainer(parts, [Stage("main", config, algorithm)], tmp_path / "run", 0).run_stage()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    margins = [r["reward_margin"] for r in records if "loss" in r]
    assert len(margins) == 40
    gained = held_out_gap(model, tokenizer, task.train_pairs, 8) - held_out_gap(
        algorithm.reference, tokenizer, task.train_pairs, 8
    )
    # Measured: +0.22 (vrpo), +0.12 (dpo), +2.1 (sdar); with the sign flipped -0.24, -0.16, -4.0.
    assert gained > 0.06, gained
    assert sum(margins[20:]) / 20 > 0.05, margins


def test_vrpo_refuses_a_task_without_pairs_and_a_bad_budget():
    with pytest.raises(ConfigError, match=r"algorithm vrpo trains on preference pairs, which task AdditionTask"):
        VRPO().check_run(dllm.build("task", "addition"), None, None)
    with pytest.raises(ConfigError, match=r"algorithm.budget .* must be >= 1, got 0"):
        VRPO(budget=0)
    with pytest.raises(ConfigError, match=r"algorithm.beta must be positive"):
        VRPO(beta=0.0)


def test_the_reference_is_saved_and_restored_with_checkpoints(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = dllm.load_model("llada_tiny")
    algorithm = VRPO(budget=1)
    algorithm.start(pair_context(model, tokenizer))
    frozen = {k: v.clone() for k, v in algorithm.reference.state_dict().items()}
    algorithm.save_models(tmp_path)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    resumed = VRPO(budget=1)
    resumed.start(pair_context(model, tokenizer))  # a copy of the moved policy, until its checkpoint loads
    resumed.load_models(tmp_path)
    for key, value in resumed.reference.state_dict().items():
        assert torch.equal(value, frozen[key]), key


def test_the_experiment_trains_saves_its_reference_and_resumes(tmp_path):
    """experiment=addition_vrpo through dllm.train on the tiny model: two steps, a checkpoint
    holding the frozen reference, then two more steps resumed from it against that reference."""
    from dllm.checkpoint import load_model_weights
    from dllm.run_files import REFERENCE_DIR

    quick = ["experiment=addition_vrpo", "model=llada_tiny", "trainer.batch_size=4", "trainer.log_every=1",
             "trainer.save_every=2", "task.num_eval=4", "algorithm.budget=2", "trainer.lr=1e-2"]  # fmt: skip
    dllm.train(compose([*quick, "trainer.max_steps=2"]), tmp_path)
    reference = tmp_path / "checkpoint" / REFERENCE_DIR
    torch.manual_seed(0)
    untrained = dllm.load_model("llada_tiny")  # the run's seed builds the same initial weights
    saved = dllm.load_model("llada_tiny")
    load_model_weights(saved, reference)
    assert all(torch.equal(a, b) for a, b in zip(untrained.state_dict().values(), saved.state_dict().values()))
    dllm.train(compose([*quick, "trainer.max_steps=4"]), tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert steps[0]["loss"] == pytest.approx(math.log(2)) and steps[0]["reward_margin"] == 0.0
    assert steps[2]["reward_margin"] != 0.0  # the resumed policy is measured against the step-0 reference


def test_two_processes_split_the_pairs_and_compute_the_same_loss(tokenizer):
    """On two processes each keeps whole pairs of the global micro-batch, with the noise drawn for
    all of its rows: the mean of their losses is the one-process loss (with antithetic off, so the
    reference's own draw is split alike)."""
    torch.manual_seed(0)
    model = dllm.load_model("sdar_tiny").train()

    def loss(rank: int, world: int) -> float:
        algorithm = VRPO(budget=2, antithetic=False)
        ctx = pair_context(model, tokenizer, micro=4 // world)
        ctx.rank, ctx.world_size = rank, world
        algorithm.start(ctx)
        batch = next(algorithm.micro_batches(ctx, 1))
        assert batch.rows.input_ids.shape[0] == 4 // world * 2 * 2 and batch.share == 1 / world
        with torch.no_grad():
            return algorithm.loss(model, batch, ctx.generator).loss.item()

    assert (loss(0, 2) + loss(1, 2)) / 2 == pytest.approx(loss(0, 1), rel=1e-6)
