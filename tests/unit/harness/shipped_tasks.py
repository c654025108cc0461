"""How the shipped lm-eval tasks' data files (dllm/harness/tasks/*.jsonl) were made: held-out
prompts of the built-in `addition` task at its defaults (fixed width), 32 of them (eval seed
1234). The multiple-choice file offers each sum with three near misses (a carry or a digit
off), the right one at position index % 4. test_tasks.py checks the shipped files equal these."""

from __future__ import annotations

import random

from dllm.data.addition import AdditionTask

NUM_PROMPTS = 32


def generative_rows() -> list[dict]:
    task = AdditionTask(num_eval=NUM_PROMPTS, fixed_width=True)
    return [{"prompt": e.prompt, "answer": e.fields["answer"]} for e in task.eval_examples()]


def multiple_choice_rows() -> list[dict]:
    rows = []
    for index, row in enumerate(generative_rows()):
        total, width = int(row["answer"]), len(row["answer"])
        near = [total + d for d in (10, -10, 1, -1, 100, -100) if 0 <= total + d < 10**width]
        wrong = random.Random(index).sample(near, 3)
        label = index % 4
        choices = [f"{value:0{width}d}" for value in wrong]
        choices.insert(label, row["answer"])
        rows.append({"prompt": row["prompt"], "choices": choices, "label": label})
    return rows
