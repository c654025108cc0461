"""bf16 autocast, LoRA through peft (save, reload, merge) and torch.compile on every family."""

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

import dllm

FAMILIES = {
    "llada_tiny": ["q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"],
    "dream_tiny": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "sdar_tiny": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


@pytest.fixture(params=sorted(FAMILIES))
def preset(request):
    return request.param


def test_bf16_autocast_forward_and_backward(preset):
    torch.manual_seed(0)
    model = dllm.load_model(preset)
    ids = torch.randint(4, 100, (2, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids).logits
    assert logits.dtype == torch.bfloat16
    logits.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_lora_trains_saves_and_merges(preset, tmp_path):
    torch.manual_seed(0)
    model = dllm.load_model(preset).eval()
    model.save_pretrained(tmp_path / "base")
    ids = torch.randint(4, 100, (2, 8))
    base_logits = model(ids).logits.detach()
    lora = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=FAMILIES[preset], init_lora_weights=False)
    )
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    adapted = lora(ids).logits.detach()
    assert not torch.allclose(adapted, base_logits)
    lora.peft_config["default"].base_model_name_or_path = str(tmp_path / "base")
    lora.save_pretrained(tmp_path / "adapter")
    reloaded = PeftModel.from_pretrained(dllm.load_model(tmp_path / "base").eval(), tmp_path / "adapter")
    torch.testing.assert_close(reloaded(ids).logits, adapted)
    merged = reloaded.merge_and_unload()
    assert type(merged) is type(model)
    torch.testing.assert_close(merged(ids).logits, adapted, atol=1e-5, rtol=1e-5)
    # An adapter directory is a model target of its own: its base loaded, the adapter merged in.
    from_adapter = dllm.load_model(tmp_path / "adapter")
    torch.testing.assert_close(from_adapter(ids).logits, adapted, atol=1e-5, rtol=1e-5)


def test_an_adapter_without_a_readable_base_is_refused_in_one_line(tmp_path):
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(dllm.DllmError, match="names no base model"):
        dllm.load_model(tmp_path)
    (tmp_path / "adapter_config.json").write_text("{truncated")
    with pytest.raises(dllm.DllmError, match="restore the adapter's config file"):
        dllm.load_model(tmp_path)


def test_torch_compile_traces_the_forward(preset):
    torch.manual_seed(0)
    model = dllm.load_model(preset).eval()
    ids = torch.randint(4, 100, (2, 8))
    compiled = torch.compile(model, backend="aot_eager", fullgraph=False)
    torch.testing.assert_close(compiled(ids).logits, model(ids).logits)


def test_an_adapter_naming_its_base_relative_to_its_folder_loads_from_anywhere(tmp_path, monkeypatch):
    torch.manual_seed(0)
    dllm.load_model("llada_tiny").save_pretrained(tmp_path / "base")
    lora = get_peft_model(dllm.load_model(tmp_path / "base"), LoraConfig(r=2, target_modules=["q_proj"]))
    lora.peft_config["default"].base_model_name_or_path = "../base"  # as peft keeps a relative path it was given
    lora.save_pretrained(tmp_path / "adapter")
    monkeypatch.chdir("/")  # "../base" from the working directory names nothing; from the adapter's folder, the base
    assert type(dllm.load_model(tmp_path / "adapter")).__name__ == "LLaDAModelLM"
