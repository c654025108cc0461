"""How the shipped lm-eval tasks' data files (dllm/harness/tasks/*.jsonl) were made: held-out
prompts of the built-in `addition` task at its defaults (fixed width), 32 of them (eval seed
1234). The multiple-choice file offers each sum with three near misses (a carry or a digit
off), the right one at position index % 4, each choice written as the model writes a
completion: padded with EOS tokens to the task's 8 generated tokens (SFT trains a dLLM to fill
its whole completion, EOS after the answer; a choice cut short after the answer is a sequence
the model never saw end there). test_tasks.py checks the shipped files equal these."""

from __future__ import annotations

import random

from dllm.data.addition import AdditionTask
from dllm.tokenizer import build_char_tokenizer

NUM_PROMPTS = 32
GEN_LENGTH = 8  # the addition task's gen_length


def as_completion(answer: str) -> str:
    """`answer` followed by EOS tokens (as text: the tokenizer reads them back as EOS) to 8 tokens."""
    return answer + build_char_tokenizer().eos_token * (GEN_LENGTH - len(answer))


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
        choices = [as_completion(f"{value:0{width}d}") for value in wrong]
        choices.insert(label, as_completion(row["answer"]))
        rows.append({"prompt": row["prompt"], "choices": choices, "label": label})
    return rows
