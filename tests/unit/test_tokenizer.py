import pytest
from transformers import AutoTokenizer

import dllm
from dllm.errors import DllmError
from dllm.tokenizer import CHAR_VOCAB_SIZE, build_char_tokenizer


def test_special_token_ids():
    tok = build_char_tokenizer()
    assert (tok.pad_token_id, tok.eos_token_id, tok.mask_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert len(tok) == CHAR_VOCAB_SIZE == 100


def test_round_trip_every_character():
    tok = build_char_tokenizer()
    text = "".join(chr(c) for c in range(32, 127)) + "\nab  c"
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text)  # one token per character, no specials added
    assert ids[:2] == [5, 6]  # ' ' and '!' follow the newline (id 4)
    assert tok.decode(ids) == text


def test_unknown_character_maps_to_unk():
    tok = build_char_tokenizer()
    assert tok("é")["input_ids"] == [tok.unk_token_id]


def test_left_padding():
    tok = build_char_tokenizer()
    batch = tok(["1+1=", "12+34="], padding=True)
    assert batch["input_ids"][0][:2] == [0, 0]
    assert batch["attention_mask"][0] == [0, 0, 1, 1, 1, 1]


def test_save_and_load_round_trip(tmp_path):
    tok = build_char_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded("9*9=81")["input_ids"] == tok("9*9=81")["input_ids"]
    assert loaded.mask_token_id == 2
    assert dllm.load_tokenizer(tmp_path).padding_side == "left"


def test_load_tokenizer_for_presets_and_bad_paths(tmp_path):
    assert len(dllm.load_tokenizer("llada_tiny")) == 100
    assert len(dllm.load_tokenizer("char")) == 100
    with pytest.raises(DllmError, match="no such directory and no such preset"):
        dllm.load_tokenizer(tmp_path / "missing")
