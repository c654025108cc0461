"""Tokenizers: the built-in character-level one for synthetic tasks, and `load_tokenizer`.

The character tokenizer is an ordinary `PreTrainedTokenizerFast`, so it saves next to a
checkpoint and loads back with `AutoTokenizer` like any public model's tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from dllm.adapters import adapter_base, is_adapter
from dllm.errors import DllmError
from dllm.registry import registry

PAD_TOKEN, EOS_TOKEN, MASK_TOKEN, UNK_TOKEN = "<|pad|>", "<|eos|>", "<|mask|>", "<|unk|>"
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, MASK_TOKEN, UNK_TOKEN)
CHARACTERS = "\n" + "".join(chr(c) for c in range(32, 127))
CHAR_VOCAB_SIZE = len(SPECIAL_TOKENS) + len(CHARACTERS)
CHAR_TOKENIZER_NAME = "char"


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer: ids 0-3 are pad, eos, mask, unk; then newline and printable ASCII."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + tuple(CHARACTERS))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        mask_token=MASK_TOKEN,
        unk_token=UNK_TOKEN,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    return tokenizer


def load_tokenizer(path_or_preset: str | Path) -> PreTrainedTokenizerBase:
    """A tokenizer from a checkpoint directory, or the character tokenizer for a preset name.

    Every model preset (`llada_tiny`, ...) uses the character tokenizer, so its name, or
    `"char"`, returns it. Prompts are left-padded, as every sampler expects.
    """
    model_presets = registry("model")  # looked up, not imported: the models import this module's vocabulary
    name = str(path_or_preset)
    if name == CHAR_TOKENIZER_NAME or (name in model_presets and not Path(name).exists()):
        return build_char_tokenizer()
    path = Path(name)
    if is_adapter(path) and not (path / "tokenizer_config.json").is_file():
        return load_tokenizer(adapter_base(path))  # an adapter saved without its tokenizer uses its base's
    if not path.is_dir():
        raise DllmError(
            f"tokenizer {name!r}: no such directory and no such preset. Give a checkpoint "
            f"directory holding tokenizer files, {CHAR_TOKENIZER_NAME!r}, or a model preset "
            f"({', '.join(model_presets.names())})."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # a truncated tokenizer.json raises from the Rust parser, a bad config from json
        why = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DllmError(
            f"cannot read the tokenizer in {path} ({type(exc).__name__}: {why}); its tokenizer files "
            f"(tokenizer.json, tokenizer_config.json, ...) are missing, truncated or corrupted: restore them"
        ) from None
    tokenizer.padding_side = "left"
    return tokenizer
