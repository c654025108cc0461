"""The names of a run directory's files, in one place (`RUN_DIR` is `hydra.run.dir`).

RUN_DIR/
  config.yaml           the resolved config of the latest `dllm-train` in this directory (a resumed
                        run rewrites it); what `dllm-eval RUN` and `dllm-generate RUN` rebuild the
                        sampler, task and reward from
  metrics.jsonl         one JSON object per log line (training, evaluations)
  samples.jsonl         completions with their rewards (rollouts, evaluations)
  eval.json             the closing held-out evaluation
  tensorboard/          with trainer.loggers=[..., tensorboard]
  wandb/, wandb_id      with trainer.loggers=[..., wandb] (the id lets a resumed run continue the same W&B run)
  trace.html            `dllm-trace RUN`: the latest rollout's decoding trajectory
  checkpoint/           the latest checkpoint (`dllm.checkpoint`), holding:
    run_config.yaml     the resolved config of the run that trained these weights: resuming compares
                        its model with the resuming run's, whatever config.yaml says by then
    trainer_state.pt    stage, step, optimizer, scheduler, random states
    rank_states/        each process's own states (several processes)
    deepspeed/          DeepSpeed's partitioned model and optimizer states (trainer.strategy=deepspeed)
    COMPLETE            written last: the checkpoint is whole
    ...                 the algorithm's own (RL: reference_model/, value_model/, rollout.pt)
  checkpoints/LABEL/    older checkpoints kept (trainer.keep_checkpoints > 1)
  eval/NAME/            `dllm-eval RUN` results: eval.json, eval.md, progress.jsonl
  .hydra/               Hydra's own record; overrides.yaml names a sweep's run for `dllm-compare`
"""

from __future__ import annotations

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
EVAL = "eval.json"
EVAL_TABLE = "eval.md"
TENSORBOARD_DIR = "tensorboard"
WANDB_ID = "wandb_id"
TRACE_PAGE = "trace.html"
CHECKPOINT_DIR = "checkpoint"
KEPT_DIR = "checkpoints"
CHECKPOINT_CONFIG = "run_config.yaml"
TRAINER_STATE = "trainer_state.pt"
RANK_STATES = "rank_states"
ROLLOUT_FILE = "rollout.pt"  # an RL checkpoint's latest rollout, for dllm-trace
REFERENCE_DIR = "reference_model"  # an RL checkpoint's frozen reference policy
VALUE_DIR = "value_model"  # the value advantage's critic
DEEPSPEED_DIR = "deepspeed"
COMPLETE = "COMPLETE"
EVAL_DIR = "eval"
EVAL_PROGRESS = "progress.jsonl"
HYDRA_OVERRIDES = (".hydra", "overrides.yaml")
