import contextlib
import json
import math

import pytest


class Killed(Exception):
    pass


def run(tmp_path, overrides, kill_after=None, kill_after_log=None, warmup=None, setup=None):
    """A tiny SFT run in `tmp_path`, killed right after the checkpoint of step `kill_after`, or
    right after logging step `kill_after_log`; with `warmup` (overrides of its trainer), an SFT
    warmup stage first; `setup(trainer)` before it trains. Its metrics lines."""
    from omegaconf import OmegaConf

    from dllm.config import build_node, compose
    from dllm.run import plan, seed_everything
    from dllm.trainer import Stage, Trainer

    tmp_path.mkdir(exist_ok=True)
    cfg = compose(["experiment=addition_tiny", "trainer.log_every=1", "trainer.save_every=1", *overrides])
    run_plan = plan(cfg)
    seed_everything(cfg.seed)
    components = run_plan.components()
    stages = run_plan.stages
    if warmup is not None:
        stages.insert(0, Stage("warmup", build_node(OmegaConf.merge(cfg.trainer, warmup)), build_node(cfg.algorithm)))
    trainer = Trainer(components, stages, tmp_path, seed=cfg.seed)
    trainer.resume_if_possible()
    save, write = trainer.save, trainer.loggers.write

    def save_then_maybe_die():
        save()
        if trainer.step == kill_after:
            raise Killed

    def write_then_maybe_die(record):
        write(record)
        dies = kill_after_log(record) if callable(kill_after_log) else record["step"] == kill_after_log
        if dies and ("loss" in record or callable(kill_after_log)):
            raise Killed

    trainer.save, trainer.loggers.write = save_then_maybe_die, write_then_maybe_die
    if setup is not None:
        setup(trainer)
    with contextlib.suppress(Killed):
        trainer.train()
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


# What the machine measures, not what the run computes: a resumed run (another process, or the
# same one after other runs) times its steps and peaks in memory on its own.
MEASURED = ("step_time", "elapsed", "eval/tokens_per_s", "peak_rss_mb", "peak_gpu_memory_mb")


def untimed(records):
    return [{k: v for k, v in r.items() if k not in MEASURED} for r in records]


def test_a_resumed_run_continues_the_same_loss_curve(tmp_path):
    overrides = ["trainer.max_steps=6", "task.num_eval=4"]
    straight = run(tmp_path / "straight", overrides)
    run(tmp_path / "resumed", overrides, kill_after=3)
    resumed = run(tmp_path / "resumed", overrides)
    losses = [(r["step"], r["loss"]) for r in straight if "loss" in r]
    assert [(r["step"], r["loss"]) for r in resumed if "loss" in r] == losses  # bitwise, on the CPU
    assert straight[-1]["eval/accuracy"] == resumed[-1]["eval/accuracy"]


def test_resume_refuses_another_tokenizer_strategy_or_partitioning(tmp_path):
    from dllm.config import compose
    from dllm.errors import DllmError
    from dllm.run import plan
    from dllm.trainer import Trainer, tokenizer_fingerprint

    run_plan = plan(compose(["experiment=addition_tiny"]))
    components = run_plan.components()
    trainer = Trainer(components, run_plan.stages, tmp_path, seed=0)
    same = tokenizer_fingerprint(components.tokenizer)
    trainer.check_resumable({"tokenizer": same, "strategy": "none", "world_size": 1})
    with pytest.raises(DllmError, match="another tokenizer .* trainer.resume=false"):
        trainer.check_resumable({"tokenizer": "0" * 16})
    with pytest.raises(DllmError, match=r"trainer.strategy=deepspeed \(ZeRO-2\) and this run uses none"):
        trainer.check_resumable({"tokenizer": same, "strategy": "deepspeed", "zero_stage": 2})
    trainer.check_resumable({"tokenizer": same, "strategy": "ddp", "world_size": 2})  # a warning: streams restart


def test_resume_config_check_names_weight_changes_and_allows_numerics(tmp_path):
    import torch
    from omegaconf import OmegaConf

    from dllm.config import compose
    from dllm.errors import DllmError
    from dllm.run import check_resumable_config

    (tmp_path / "checkpoint").mkdir()
    torch.save({"step": 1}, tmp_path / "checkpoint" / "trainer_state.pt")
    saved = compose(["experiment=addition_tiny"])
    (tmp_path / "checkpoint" / "run_config.yaml").write_text(OmegaConf.to_yaml(saved, resolve=True))
    check_resumable_config(compose(["experiment=addition_tiny", "trainer.max_steps=99"]), tmp_path)
    check_resumable_config(compose(["experiment=addition_tiny", "+model.dtype=bfloat16"]), tmp_path)
    check_resumable_config(compose(["experiment=addition_tiny", "tokenizer=char"]), tmp_path)  # the same vocabulary
    with pytest.raises(DllmError, match="model._target_ is 'dllm.models.llada.llada_tiny' in the checkpoint"):
        check_resumable_config(compose(["experiment=addition_tiny", "model=dream_tiny"]), tmp_path)
    check_resumable_config(compose(["experiment=addition_tiny", "model=dream_tiny", "trainer.resume=false"]), tmp_path)


def test_elapsed_time_accumulates_and_carries_over_a_resume(tmp_path):
    overrides = ["trainer.max_steps=6", "task.num_eval=4"]
    run(tmp_path, overrides, kill_after=3)  # checkpoint at step 3 (save_every=1), then killed
    first = [r["elapsed"] for r in run(tmp_path / "probe", overrides) if "elapsed" in r]
    assert len(first) == 7 and first == sorted(first) and first[0] > 0  # 6 steps and the evaluation
    resumed = [r for r in run(tmp_path, overrides) if "elapsed" in r]
    before_kill = [r for r in resumed if r["step"] <= 3 and "loss" in r]
    after = [r for r in resumed if r["step"] > 3]
    assert after[0]["elapsed"] > before_kill[-1]["elapsed"]  # counted on from the checkpoint, not from 0


def test_a_resumed_run_logs_each_step_once_like_an_uninterrupted_run(tmp_path):
    """Checkpoints every 2 steps; killed after logging step 5 (checkpoint at 4), with a torn line
    after it: the resumed run's metrics.jsonl is the uninterrupted run's, line for line."""
    overrides = ["trainer.max_steps=6", "trainer.save_every=2", "task.num_eval=4", "trainer.sample_every=1"]
    straight = run(tmp_path / "straight", overrides)
    killed = tmp_path / "killed"
    logged = run(killed, overrides, kill_after_log=5)
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 5]
    with (killed / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 6, "lo')  # killed mid-write
    resumed = run(killed, overrides)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6, 6]  # six steps and the final evaluation
    assert untimed(resumed) == untimed(straight)
    samples = [json.loads(line) for line in (killed / "samples.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (tmp_path / "straight" / "samples.jsonl").read_text().splitlines()]
    assert [(s["source"], s["step"]) for s in samples] == [(s["source"], s["step"]) for s in expected]


def test_a_run_killed_after_its_final_evaluation_logs_it_once(tmp_path):
    """Killed after the closing evaluation was logged but before the final checkpoint: the run
    resumes at its last step and evaluates again; the log holds that evaluation once."""
    overrides = ["trainer.max_steps=4", "trainer.save_every=2", "task.num_eval=4"]
    straight = run(tmp_path / "straight", overrides)
    run(tmp_path / "killed", overrides, kill_after_log=lambda record: "eval/accuracy" in record)
    resumed = run(tmp_path / "killed", overrides)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 4] and untimed(resumed) == untimed(straight)


def test_a_run_without_a_checkpoint_starts_a_fresh_log(tmp_path):
    overrides = ["trainer.max_steps=3", "trainer.save_every=0", "task.num_eval=4"]
    run(tmp_path, overrides, kill_after_log=2)  # killed before its first checkpoint
    assert [r["step"] for r in run(tmp_path, overrides)] == [1, 2, 3, 3]


def test_a_checkpoint_without_its_trainer_state_stops_the_run_and_keeps_the_weights(tmp_path):
    from dllm.errors import DllmError

    overrides = ["trainer.max_steps=2", "task.num_eval=4"]
    run(tmp_path, overrides)
    (tmp_path / "checkpoint" / "trainer_state.pt").unlink()
    weights = (tmp_path / "checkpoint" / "model.safetensors").read_bytes()
    with pytest.raises(DllmError, match="has no trainer_state.pt, so the run cannot resume from it"):
        run(tmp_path, overrides)
    assert (tmp_path / "checkpoint" / "model.safetensors").read_bytes() == weights


def test_resume_false_starts_every_stage_afresh_without_reading_the_checkpoint(tmp_path):
    """`trainer.resume=false` (the main stage's) decides for the whole run: a warmup stage, whose
    own trainer node says resume: true, does not resume either."""
    warmup = {"max_steps": 2, "resume": True}
    overrides = ["trainer.max_steps=2", "task.num_eval=4"]
    straight = run(tmp_path / "straight", overrides, warmup=warmup)
    run(tmp_path / "again", overrides, warmup=warmup, kill_after=1)  # a checkpoint at the warmup's step 1
    (tmp_path / "again" / "checkpoint" / "trainer_state.pt").write_bytes(b"unreadable: never read")
    fresh = run(tmp_path / "again", [*overrides, "trainer.resume=false"], warmup=warmup)
    assert [(r["stage"], r["step"]) for r in fresh] == [(r["stage"], r["step"]) for r in straight]
    assert untimed(fresh) == untimed(straight)


def poison(steps):
    """A `run` setup: the loss and every gradient of the optimizer steps `steps` (1-based) are NaN;
    records the weights after each step in `trainer.weights`."""

    def setup(trainer):
        import dataclasses

        import torch

        algorithm, optimizer_step = trainer.stage.algorithm, trainer._optimizer_step
        original = algorithm.loss_and_backward
        trainer.weights = []

        def loss_and_backward(model, *args, **kwargs):
            out = original(model, *args, **kwargs)
            if trainer.step + 1 in steps:
                for parameter in model.parameters():
                    if parameter.grad is not None:
                        parameter.grad.fill_(math.nan)
                out = dataclasses.replace(out, loss=torch.tensor(math.nan))
            return out

        def recorded_step():
            record = optimizer_step()
            trainer.weights.append([p.detach().clone() for p in trainer.model.parameters()])
            return record

        algorithm.loss_and_backward, trainer._optimizer_step = loss_and_backward, recorded_step

    return setup


def test_a_non_finite_loss_stops_the_run_before_a_checkpoint_holds_it(tmp_path):
    import torch

    from dllm.checkpoint import load_trainer_state
    from dllm.errors import DllmError

    with pytest.raises(DllmError, match=r"non-finite loss nan at step 3: stopped before updating the weights"):
        run(tmp_path, ["trainer.max_steps=5", "task.num_eval=4"], setup=poison({3}))
    assert load_trainer_state(tmp_path)["step"] == 2
    weights = dllm_weights(tmp_path)
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert [r["step"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())] == [1, 2]


def dllm_weights(run_dir):
    from safetensors.torch import load_file

    return load_file(run_dir / "checkpoint" / "model.safetensors")


def test_skip_drops_the_non_finite_step_counts_it_and_stops_after_too_many_in_a_row(tmp_path):
    import torch

    from dllm.errors import DllmError

    overrides = ["trainer.max_steps=5", "task.num_eval=4", "trainer.on_nonfinite=skip"]
    seen = {}
    setup = poison({3})
    records = run(tmp_path / "skip", overrides, setup=lambda t: (setup(t), seen.update(trainer=t)))
    trainer = seen["trainer"]
    assert all(torch.equal(a, b) for a, b in zip(trainer.weights[1], trainer.weights[2]))  # step 3 changed nothing
    assert not all(torch.equal(a, b) for a, b in zip(trainer.weights[2], trainer.weights[3]))  # step 4 trained
    assert all(torch.isfinite(w).all() for w in dllm_weights(tmp_path / "skip").values())
    training = [r for r in records if "grad_norm" in r]
    assert [r.get("skipped_steps", 0) for r in training] == [0, 0, 1, 1, 1]
    assert math.isnan(training[2]["loss"]) and math.isfinite(training[3]["loss"])
    with pytest.raises(DllmError, match="3 optimizer steps in a row .* more than trainer.max_nonfinite_in_a_row=2"):
        run(tmp_path / "many", [*overrides, "trainer.max_nonfinite_in_a_row=2"], setup=poison({2, 3, 4}))


RL_EVERY_THIRD_STEP = [  # diffu_grpo, small: a rollout of 4 rows, 3 passes of one optimizer step each
    "algorithm=diffu_grpo", "algorithm.group_size=2", "algorithm.prompts_per_rollout=2",
    "algorithm.num_iterations=3", "trainer.batch_size=4", "trainer.max_steps=10", "task.num_eval=2",
    "trainer.save_every=0",
]  # fmt: skip


class SometimesFailingReward:
    """Scores that differ between completions (mean character code); every third call fails."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, prompts, completions, **fields):
        self.calls += 1
        if self.calls % 3 == 2:
            raise RuntimeError("flaky reward")
        return [sum(map(ord, text)) / max(len(text), 1) / 127 for text in completions]


def with_reward(trainer):
    trainer.context.reward = trainer.c.reward = SometimesFailingReward()


def test_an_rl_log_interval_that_does_not_line_up_with_rollouts_reports_them_on_every_line(tmp_path):
    """A rollout every 3 steps (steps 1-3 train on rollout 1, 4-6 on rollout 2, ...), lines every 5
    steps or every step: each line averages its steps' losses and the rewards of the rollouts its
    steps trained on (each once), sums their counts, and says what it covers."""
    overrides = [*RL_EVERY_THIRD_STEP, "trainer.max_steps=12"]
    steps = [r for r in run(tmp_path / "each", [*overrides, "trainer.log_every=1"], setup=with_reward) if "loss" in r]
    lines = [r for r in run(tmp_path / "every5", [*overrides, "trainer.log_every=5"], setup=with_reward) if "loss" in r]
    assert all(r["rollouts_covered"] == 1 and r["steps_covered"] == 1 for r in steps)  # a line shorter than a rollout
    rollouts = {(r["step"] - 1) // 3: r for r in steps}  # the records of each rollout's steps agree on its metrics
    assert all(steps[i]["reward"] == rollouts[i // 3]["reward"] for i in range(12))
    assert len({r["reward"] for r in rollouts.values()}) == 4 and sum(r["reward_failures"] for r in rollouts.values())
    assert [(r["step"], r["steps_covered"], r["rollouts_covered"]) for r in lines] == [
        (5, 5, 2),
        (10, 5, 3),
        (12, 2, 1),
    ]
    for line, (first, last) in zip(lines, [(1, 5), (6, 10), (11, 12)]):
        covered = steps[first - 1 : last]
        drawn = [rollouts[n] for n in sorted({(r["step"] - 1) // 3 for r in covered})]
        assert line["loss"] == pytest.approx(sum(r["loss"] for r in covered) / len(covered), rel=1e-9)
        for key in ("reward", "accuracy", "kept_fraction", "response_length"):
            assert line[key] == pytest.approx(sum(r[key] for r in drawn) / len(drawn), rel=1e-9)
        assert line["reward_failures"] == sum(r["reward_failures"] for r in drawn)
        assert line["lr"] == covered[-1]["lr"]


def test_a_resume_between_two_log_lines_logs_the_lines_of_an_uninterrupted_run(tmp_path):
    """Checkpoints every 3 steps, lines every 4: the checkpoint of step 6 keeps steps 5 and 6, not
    yet logged, so the resumed run's line of step 8 covers steps 5-8 as the uninterrupted run's does."""
    overrides = ["trainer.max_steps=8", "trainer.log_every=4", "trainer.save_every=3", "task.num_eval=4"]
    straight = run(tmp_path / "straight", overrides)
    assert [r["step"] for r in run(tmp_path / "resumed", overrides, kill_after=6)] == [4]
    resumed = run(tmp_path / "resumed", overrides)
    assert [(r["step"], r.get("steps_covered")) for r in resumed] == [(4, 4), (8, 4), (8, None)]
    assert untimed(resumed) == untimed(straight)


def ctrl_c(after_step, monkeypatch=None):
    """A `run` setup: SIGINT to this process once optimizer step `after_step` has run (as a
    terminal's Ctrl-C); with `monkeypatch`, a second one in the middle of every checkpoint write."""

    def setup(trainer):
        import os
        import signal

        import dllm.trainer

        optimizer_step, write = trainer._optimizer_step, dllm.trainer.save_checkpoint

        def step():
            record = optimizer_step()
            if trainer.step + 1 == after_step:
                os.kill(os.getpid(), signal.SIGINT)
            return record

        def save_checkpoint(run_dir, model, *args, **kwargs):
            model.save_pretrained = lambda *a, save=model.save_pretrained, **k: (
                os.kill(os.getpid(), signal.SIGINT),
                save(*a, **k),
            )
            return write(run_dir, model, *args, **kwargs)

        trainer._optimizer_step = step
        if monkeypatch is not None:
            monkeypatch.setattr(dllm.trainer, "save_checkpoint", save_checkpoint)

    return setup


def test_ctrl_c_checkpoints_the_step_under_way_and_the_resumed_run_repeats_the_uninterrupted_one(tmp_path):
    from dllm.checkpoint import load_trainer_state
    from dllm.interrupt import TrainingInterrupted

    overrides = ["trainer.max_steps=6", "trainer.save_every=0", "trainer.log_every=2", "task.num_eval=4"]
    straight = run(tmp_path / "straight", overrides)
    with pytest.raises(TrainingInterrupted, match=r"interrupted at step 3: checkpoint written to .*checkpoint"):
        run(tmp_path / "stopped", overrides, setup=ctrl_c(after_step=3))
    assert load_trainer_state(tmp_path / "stopped")["step"] == 3
    resumed = run(tmp_path / "stopped", overrides)
    assert untimed(resumed) == untimed(straight)  # the line of step 4 covers steps 3 and 4, as straight's


def test_a_second_ctrl_c_while_the_checkpoint_is_written_is_ignored(tmp_path, monkeypatch):
    import signal

    from dllm.checkpoint import load_trainer_state
    from dllm.interrupt import TrainingInterrupted

    overrides = ["trainer.max_steps=6", "trainer.save_every=0", "task.num_eval=4"]
    handler = signal.getsignal(signal.SIGINT)  # Python's own, or SIG_IGN when launched in the background
    with pytest.raises(TrainingInterrupted):
        run(tmp_path, overrides, setup=ctrl_c(after_step=2, monkeypatch=monkeypatch))
    assert load_trainer_state(tmp_path)["step"] == 2
    assert not (tmp_path / ".checkpoint.partial").exists()
    assert signal.getsignal(signal.SIGINT) is handler  # restored after the run


def test_weight_decay_shrinks_matrices_only_in_every_stage(tmp_path):
    """AdamW decays linear weights and embeddings, never norm gains or biases; a later stage's
    rate replaces the earlier one's on the matrices alone."""
    import torch

    from dllm.trainer import decay_groups

    model = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))
    groups = decay_groups(model, 0.25)
    assert [(g["weight_decay"], [tuple(p.shape) for p in g["params"]]) for g in groups] == [
        (0.25, [(5, 3), (2, 3)]),
        (0.0, [(3,), (3,), (2,)]),
    ]
    # With no gradient, one AdamW step is the decay alone: w <- w (1 - lr wd) on matrices, vectors kept.
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(groups, lr=0.5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for b, p in zip(before, model.parameters()):
        torch.testing.assert_close(p.detach(), b * (1 - 0.5 * 0.25) if b.dim() >= 2 else b)
    from dllm.distributed import Collective, GradientSync

    GradientSync(model, optimizer, Collective()).new_stage(0.1, (0.9, 0.99), 0.5, 1.0)  # the next stage
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.5, 0.0]
