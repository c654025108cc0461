"""`--model dllm` through lm-eval's own API (`simple_evaluate`) on the SFT fixture
(llada_tiny trained on addition) with the shipped local tasks."""

import math

import pytest
import torch
from lm_eval import simple_evaluate
from lm_eval.api.instance import Instance

from dllm.data.addition import AdditionTask
from dllm.errors import ConfigError, DllmError
from dllm.evaluation import evaluate
from dllm.harness.model import DllmLM, stop_at
from dllm.rewards.exact_match import ExactMatch
from tests.unit.harness.shipped_tasks import NUM_PROMPTS, as_completion

from .conftest import SFT
from .conftest import SHIPPED as SHIPPED_TASKS

SAMPLERS = {  # the reference decoder, and Fast-dLLM's threshold decoding with its dual cache over 4-token blocks
    "llada": {},
    "fast_dllm": {"sampler": "fast_dllm", "threshold": 0.9, "block_length": 4, "use_cache": "dual"},
}


def generation_request(context: str, **gen_kwargs) -> Instance:
    return Instance("generate_until", {}, (context, gen_kwargs), 0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_generation_accuracy_and_completions_equal_dllm_eval(name, shipped_manager):
    """The same 32 prompts (dllm's addition task, held out), the same decoder at temperature 0,
    batches of 16, shipped defaults (EOS stopping on): lm-eval's exact_match equals dllm-eval's
    accuracy, and every completion lm-eval scored is the one dllm-eval scored."""
    lm = DllmLM(pretrained=str(SFT), batch_size=16, seed=0, **SAMPLERS[name])
    results = simple_evaluate(model=lm, tasks=["dllm_addition"], task_manager=shipped_manager, log_samples=True)
    harness_accuracy = results["results"]["dllm_addition"]["exact_match,none"]
    responses = {s["doc"]["prompt"]: s["resps"][0][0] for s in results["samples"]["dllm_addition"]}

    task = AdditionTask(num_eval=NUM_PROMPTS, fixed_width=True)
    ours = evaluate(
        lm.model, lm.tokenizer, lm.sampler, task, ExactMatch(), batch_size=16, num_samples_logged=NUM_PROMPTS
    )
    assert harness_accuracy == ours.accuracy
    assert 0.3 < ours.accuracy < 1.0  # a trained model that still errs: the comparison can tell them apart
    assert responses == {s["prompt"]: s["completion"] for s in ours.samples}


def test_results_record_the_setup_that_reproduces_them(shipped_manager):
    lm = DllmLM(pretrained=str(SFT), **SAMPLERS["fast_dllm"])
    results = simple_evaluate(model=lm, tasks=["dllm_addition"], task_manager=shipped_manager, limit=4)
    setup = results["config"]["dllm"]
    assert setup["model"] == str(SFT) and setup["model_class"] == "LLaDAModelLM"
    assert setup["sampler"]["_target_"] == "dllm.samplers.fast_dllm.FastDLLMSampler"
    assert setup["sampler_settings"]["threshold"] == 0.9 and setup["sampler_settings"]["use_cache"] == "dual"
    assert set(setup["versions"]) == {"dllm", "lm_eval", "torch", "transformers"}
    generation = setup["generate_until"]
    assert generation["completions"] == 4 and generation["tokens_per_s"] > 0
    # dual cache: a refresh forward per block plus one per step, at least one step per 4-token block
    assert 2 * 2 / 8 <= generation["nfe_per_token"] <= 1 + 2 / 8


def test_generation_cuts_after_the_first_stop_string():
    assert stop_at("0240 and 12", ["4", "1"]) == "02"
    assert stop_at("0240", []) == "0240" and stop_at("0240", [""]) == "0240"
    lm = DllmLM(pretrained=str(SFT), seed=0)
    whole, cut = lm.generate_until([generation_request("219+021=", max_gen_toks=8),
                                    generation_request("219+021=", max_gen_toks=8, until=["4"])])  # fmt: skip
    assert "4" in whole and cut == whole[: whole.index("4")]


def test_gen_length_comes_from_the_model_args_then_the_request_then_256():
    lm = DllmLM(pretrained=str(SFT))
    assert lm.request_gen_length({"max_gen_toks": 8}) == 8 and lm.request_gen_length({}) == 256
    assert DllmLM(pretrained=str(SFT), gen_length=16).request_gen_length({"max_gen_toks": 8}) == 16


def test_multiple_choice_ranks_the_right_sum_above_near_misses(shipped_manager):
    """The Monte Carlo log-likelihood (mc_num 32 per choice, seed 1234) on the trained model:
    the right sum scores highest on most of the 32 prompts (chance: 1 in 4)."""
    lm = DllmLM(pretrained=str(SFT), mc_num=32, mc_batch_size=32, check_greedy=False)
    results = simple_evaluate(model=lm, tasks=["dllm_addition_mc"], task_manager=shipped_manager)
    assert results["results"]["dllm_addition_mc"]["acc,none"] >= 0.75
    assert results["config"]["dllm"]["loglikelihood"]["requests"] == 4 * NUM_PROMPTS


def test_loglikelihood_requests_answer_an_estimate_and_the_greedy_check():
    lm = DllmLM(pretrained=str(SFT), mc_num=32, mc_batch_size=16)
    requests = [Instance("loglikelihood", {}, ("219+021=", as_completion(a)), 0) for a in ("0240", "0140")]
    (right, right_greedy), (wrong, wrong_greedy) = lm.loglikelihood(requests)
    assert math.isfinite(right) and right > wrong
    assert isinstance(right_greedy, bool) and wrong_greedy is False


def test_loglikelihood_rolling_is_refused_in_one_line():
    lm = DllmLM(pretrained=str(SFT))
    with pytest.raises(DllmError, match="loglikelihood_rolling .* not supported by --model dllm") as info:
        lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("some text",), 0)])
    assert "\n" not in str(info.value)


def test_a_model_family_without_an_estimator_is_refused_in_one_line():
    lm = DllmLM(pretrained="sdar_tiny")
    lm.model.shift_logits = True  # a block model with shifted logits: no training layout, so no estimate
    with pytest.raises(DllmError) as info:
        lm.loglikelihood([Instance("loglikelihood", {}, ("12+3=", "15"), 0)])
    assert "\n" not in str(info.value) and "SDAR" in str(info.value)


def test_a_sampler_that_cannot_decode_the_model_is_refused_before_decoding():
    with pytest.raises(ConfigError, match="block"):
        DllmLM(pretrained=str(SFT), sampler="sdar")  # a block decoder on a full-attention model
    with pytest.raises(ConfigError, match="dream decoder is for full-attention models"):
        DllmLM(pretrained="sdar_tiny", sampler="dream")


def test_an_unknown_model_argument_is_refused_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"thresold: neither an option of --model dllm .* a setting of fast_dllm"):
        DllmLM(pretrained=str(SFT), sampler="fast_dllm", thresold=0.9)


def test_chat_templates_wrap_the_history_or_are_refused_in_one_line():
    lm = DllmLM(pretrained=str(SFT))
    with pytest.raises(ConfigError, match="has no chat template"):
        lm.apply_chat_template([{"role": "user", "content": "1+1="}])
    lm.tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"  # noqa: E501
    assert lm.apply_chat_template([{"role": "user", "content": "1+1="}]) == "<user>1+1=<assistant>"
    assert lm.chat_template(True) == lm.tokenizer.chat_template and lm.chat_template(False) is None


def test_a_lora_adapter_is_evaluated_without_merging_by_hand(tmp_path):
    from peft import LoraConfig, get_peft_model

    base = DllmLM(pretrained=str(SFT)).model
    torch.manual_seed(0)
    lora = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.peft_config["default"].base_model_name_or_path = str(SFT)
    lora.save_pretrained(tmp_path)
    ids = torch.tensor([[5, 6, 7, 8]])
    expected = lora(ids).logits
    lm = DllmLM(pretrained=str(tmp_path))
    torch.testing.assert_close(lm.model(ids).logits, expected, atol=1e-5, rtol=1e-5)
    assert lm.tokenizer.eos_token_id == DllmLM(pretrained=str(SFT)).tokenizer.eos_token_id


def test_add_bos_token_prepends_the_bos_to_every_context_once():
    with pytest.raises(ConfigError, match="has no BOS token"):
        DllmLM(pretrained=str(SFT), add_bos_token=True)  # the character tokenizer has none
    lm = DllmLM(pretrained=str(SFT))
    lm.tokenizer.add_special_tokens({"bos_token": "<|unk|>"})
    bos = lm.tokenizer.bos_token_id
    lm.add_bos_token = True
    assert lm.tok_encode("12+3=") == [bos, *lm.tokenizer("12+3=")["input_ids"]]
    assert lm.tok_encode("<|unk|>12") == lm.tokenizer("<|unk|>12")["input_ids"]  # not twice
    assert lm.tok_encode("15", add_special_tokens=False)[0] != bos  # a continuation gets none
    assert lm.get_model_info()["dllm"]["add_bos_token"] is True


def test_a_rerun_with_use_cache_answers_from_the_cache(shipped_manager, tmp_path):
    """lm-eval's `--use_cache`: every answer is stored as it is computed (the adapter's cache
    hook), so an interrupted evaluation rerun with the same cache decodes and scores only what
    it lacks; here, nothing: the same numbers, no forward."""
    kwargs = dict(tasks=list(SHIPPED_TASKS), task_manager=shipped_manager, limit=4, use_cache=str(tmp_path / "cache"))
    first = simple_evaluate(model=DllmLM(pretrained=str(SFT), mc_num=8, mc_batch_size=8), **kwargs)
    rerun = DllmLM(pretrained=str(SFT), mc_num=8, mc_batch_size=8)
    second = simple_evaluate(model=rerun, **kwargs)
    assert second["results"] == first["results"]
    assert rerun.tally.completions == 0 and rerun.tally.likelihoods == 0


def test_an_interrupted_run_resumes_from_the_cache_computing_only_what_it_lacks(tmp_path):
    """A first run answers 3 of 6 likelihood requests and 1 of 2 generations (then "dies"); the
    rerun over all of them with the same cache computes only the other ones, and its answers
    for all are the ones an uninterrupted run gives."""
    from lm_eval.api.model import CachingLM

    likelihoods = [Instance("loglikelihood", {}, ("219+021=", as_completion(a)), i)
                   for i, a in enumerate(("0240", "0140", "0250", "0241", "1240", "0230"))]  # fmt: skip
    generations = [generation_request(p, max_gen_toks=8) for p in ("219+021=", "092+592=")]
    settings = dict(pretrained=str(SFT), mc_num=8, mc_batch_size=8, seed=0)
    first = CachingLM(DllmLM(**settings), str(tmp_path / "cache"))
    partial = first.loglikelihood(likelihoods[:3]) + first.generate_until(generations[:1])
    rerun_lm = DllmLM(**settings)
    rerun = CachingLM(rerun_lm, str(tmp_path / "cache"))
    answers = rerun.loglikelihood(likelihoods) + rerun.generate_until(generations)
    assert rerun_lm.tally.likelihoods == 3 and rerun_lm.tally.completions == 1
    fresh = DllmLM(**settings)
    assert answers == fresh.loglikelihood(likelihoods) + fresh.generate_until(generations)
    assert answers[:3] + answers[6:7] == partial
    info = rerun_lm.get_model_info()["dllm"]["generate_until"]
    assert info["completions"] == 1 and info["tokens_per_s"] > 0
    assert DllmLM(**settings).get_model_info()["dllm"]["generate_until"]["tokens_per_s"] is None  # nothing decoded


def test_a_max_gen_toks_the_blocks_do_not_divide_decodes_the_next_length_and_cuts_back():
    """fast_dllm over 4-token blocks, max_gen_toks 6: 8 tokens decoded, the first 6 kept."""
    from dllm.generation import decode_batch
    from dllm.text import decode_completions

    lm = DllmLM(pretrained=str(SFT), sampler="fast_dllm", block_length=4, seed=0)
    (text,) = lm.generate_until([generation_request("219+021=", max_gen_toks=6)])
    whole = decode_batch(lm.model, lm.tokenizer, lm.sampler, ["219+021="], 8, torch.Generator().manual_seed(0))
    assert text == decode_completions(lm.tokenizer, whole.completions[:, :6])[0][0]
    with pytest.raises(ConfigError, match="block_length"):
        DllmLM(pretrained=str(SFT), sampler="fast_dllm", block_length=4, gen_length=6)


def test_bad_settings_are_refused_at_start_up_in_one_line():
    with pytest.raises(ConfigError, match="mc_num 100 with mc_batch_size 32"):
        DllmLM(pretrained=str(SFT), mc_num=100)
    with pytest.raises(DllmError, match="cfg 0.5 on .*block diffusion model"):
        DllmLM(pretrained="sdar_tiny", cfg=0.5)
    with pytest.raises(ConfigError, match="'auto' is not supported by --model dllm"):
        DllmLM(pretrained=str(SFT), batch_size="auto")
    lm = DllmLM(pretrained=str(SFT))
    with pytest.raises(DllmError, match="generate_until request 1 has an empty context"):
        lm.generate_until([generation_request("1+1="), generation_request("")])


def test_until_may_be_a_string_a_list_none_or_a_number():
    from dllm.harness.model import stop_strings

    assert stop_strings("Q:") == ["Q:"] and stop_strings(["a", "b"]) == ["a", "b"]
    assert stop_strings(None) == [] and stop_strings(0) == ["0"]  # --gen_kwargs until=0


def test_lm_eval_finds_the_model_by_name_once_dllm_harness_is_imported(shipped_manager):
    import dllm.harness  # noqa: F401

    results = simple_evaluate(
        model="dllm", model_args=f"pretrained={SFT},sampler=fast_dllm,block_length=4", tasks=["dllm_addition"],
        task_manager=shipped_manager, limit=2, device="cpu",
    )  # fmt: skip
    assert results["config"]["dllm"]["sampler_settings"]["block_length"] == 4
    assert results["config"]["model_args"] == f"pretrained={SFT},sampler=fast_dllm,block_length=4"
