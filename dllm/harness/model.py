"""`--model dllm`: any dllm model with any registered sampler as an lm-evaluation-harness model.

`pretrained` is what `dllm-eval` takes: a run directory (its checkpoint, sampler and settings),
a checkpoint directory, a LoRA adapter directory, or a model preset. The other model arguments:

- `sampler=NAME` swaps the sampler (`dllm list sampler`); any key of the sampler's config
  (`threshold=0.9,block_length=32,use_cache=dual`) sets that setting;
- `gen_length`: tokens each `generate_until` request decodes (default: the request's
  `max_gen_toks`, else 256, lm-eval's own default);
- `mc_num` (128), `mc_batch_size` (32), `cfg` (0: unguided), `check_greedy` (true), `seed`
  (1234): the Monte Carlo log-likelihood of `dllm.likelihood`, as LLaDA's evaluation computes it;
- `add_bos_token`: prepend the tokenizer's BOS token to every context (Dream's evaluation);
- `batch_size` (lm-eval's `--batch_size`): prompts per sampler call; `max_batch_rows`: rows
  decoding at once (continuous batching); `device`, `dtype` (e.g. bfloat16).

Under `accelerate launch` (or `torchrun`), each process takes its share of the requests on its
own device and lm-eval gathers the results. A likelihood depends only on its request (its own
seed); a greedy completion only on its prompt; a sampled one also on the batch it was drawn in.
The measured speed in the results is process 0's.

`generate_until` decodes through `dllm.generation.decode_batch` (the path of dllm-eval and
rollouts): cut at the model's EOS, then after the first of the request's `until` strings.
`loglikelihood` is the masked-diffusion ELBO (full attention) or the block-wise one (block
diffusion); `loglikelihood_rolling` is refused. `get_model_info` puts the model, the sampler
and all its settings, tokens/s, NFE per token and the versions into lm-eval's results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from dllm.config import build_node, check_model_tokenizer, check_node
from dllm.distributed import Collective, launched_world_size, start_runtime
from dllm.errors import ConfigError, DllmError
from dllm.evaluation import batch_seed
from dllm.generation import decode_batch
from dllm.likelihood import check_likelihood_support, check_mc, greedy_matches, log_likelihoods
from dllm.models.base import load_model
from dllm.targets import Target, resolve_target
from dllm.text import decode_completions
from dllm.tokenizer import load_tokenizer

logger = logging.getLogger("dllm.harness")

DEFAULT_GEN_LENGTH = 256  # lm-eval's own default max_gen_toks, for tasks that set none
MAX_BLOCK_ROUNDING = 1025  # how far past a request's max_gen_toks to look for a length the blocks divide

# Model arguments of the adapter itself; any other key must be a key of the sampler's config.
ADAPTER_ARGS = (
    "pretrained", "sampler", "gen_length", "mc_num", "mc_batch_size", "cfg", "check_greedy", "seed", "add_bos_token",
    "batch_size", "max_batch_size", "max_batch_rows", "device", "dtype",
)  # fmt: skip


def override_value(value: Any) -> str:
    """A model-argument value (lm-eval has parsed numbers and booleans) as a Hydra override value."""
    if value is None or value == "None":
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def sampler_overrides(target: str, sampler: str | None, options: dict[str, Any]) -> list[str]:
    """`sampler=NAME` and `sampler.KEY=VALUE` overrides for the sampler options among `options`,
    each checked against the chosen sampler's config keys before anything loads."""
    choice = [f"sampler={sampler}"] if sampler else []
    keys = set(resolve_target(target, choice).config.sampler.keys()) - {"_target_"}
    unknown = sorted(set(options) - keys)
    if unknown:
        name = sampler or "the target's sampler"
        raise ConfigError(
            f"model argument(s) {', '.join(unknown)}: neither an option of --model dllm "
            f"({', '.join(ADAPTER_ARGS)}) nor a setting of {name} ({', '.join(sorted(keys))})"
        )
    return choice + [f"sampler.{key}={override_value(value)}" for key, value in options.items()]


@dataclass
class Tally:
    """What the adapter measured: generate_until completions, their decoded positions, forwards
    and seconds; loglikelihood requests and seconds (answers lm-eval's cache gave are not counted)."""

    completions: int = 0
    positions: int = 0
    forwards: int = 0
    generation_s: float = 0.0
    likelihoods: int = 0
    likelihood_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "generate_until": {  # rates are null when nothing decoded (e.g. all answered from --use_cache)
                "completions": self.completions,
                "tokens_per_s": self.positions / self.generation_s if self.generation_s else None,
                "nfe_per_token": self.forwards / self.positions if self.positions else None,
                "seconds": self.generation_s,
            },
            "loglikelihood": {"requests": self.likelihoods, "seconds": self.likelihood_s},
        }


def stop_strings(until: Any) -> list[str]:
    """A request's `until` as a list of strings (lm-eval passes a string, a list, or None; a
    number given on the command line, `--gen_kwargs until=0`, stops at its text)."""
    if until is None:
        return []
    if isinstance(until, (list, tuple)):
        return [str(stop) for stop in until]
    return [str(until)]


def stop_at(text: str, until: Sequence[str]) -> str:
    """`text` cut before the earliest occurrence of any of the `until` strings."""
    cuts = [text.find(stop) for stop in until if stop]
    cuts = [cut for cut in cuts if cut >= 0]
    return text[: min(cuts)] if cuts else text


class DllmLM(TemplateLM):
    def __init__(
        self,
        pretrained: str,
        sampler: str | None = None,
        gen_length: int | None = None,
        mc_num: int = 128,
        mc_batch_size: int = 32,
        cfg: float = 0.0,
        check_greedy: bool = True,
        seed: int = 1234,
        add_bos_token: bool = False,
        batch_size: int | str | None = 1,
        max_batch_size: int | None = None,
        max_batch_rows: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        overrides: Sequence[str] = (),
        **sampler_options: Any,
    ) -> None:
        super().__init__()
        pretrained = str(pretrained)
        try:
            self.batch_size = int(batch_size or 1)
        except ValueError:
            raise ConfigError(
                f"batch_size {batch_size!r}: give a number of prompts per sampler call ('auto' is not supported by "
                f"--model dllm: a diffusion decoder's memory is set by gen_length and the sampler, not the prompts)"
            ) from None
        if self.batch_size < 1 or (gen_length is not None and int(gen_length) < 1):
            raise ConfigError(f"batch_size ({batch_size}) and gen_length ({gen_length}) must be positive")
        overrides = [*overrides, *sampler_overrides(pretrained, sampler, sampler_options)]
        self.target: Target = resolve_target(pretrained, overrides)
        check_node("sampler", self.target.config.sampler)
        self.sampler = build_node(self.target.config.sampler)
        self.gen_length = int(gen_length) if gen_length is not None else None
        self.mc_num, self.mc_batch_size, self.cfg = int(mc_num), int(mc_batch_size), float(cfg)
        check_mc(self.mc_num, self.mc_batch_size)  # before anything loads or decodes, not at the first request
        self.check_greedy, self.seed = bool(check_greedy), int(seed)
        self.max_batch_rows = max_batch_rows
        self.dtype = dtype

        torch.manual_seed(self.seed)  # a preset's random weights: the same on every run
        self.model = load_model(self.target.model, **({"dtype": dtype} if dtype else {})).eval()
        self.collective, target_device = self.start_processes(device)
        self.model.to(target_device)
        self.tokenizer = load_tokenizer(self.target.model)
        check_model_tokenizer(self.model, self.tokenizer)
        self.add_bos_token = bool(add_bos_token)
        if self.add_bos_token and self.tokenizer.bos_token_id is None:
            raise ConfigError(f"add_bos_token: the tokenizer of {self.target.model} has no BOS token; drop the option")
        self.sampler.check_gen_length(self.default_gen_length(), self.model.block_size)
        if self.cfg:
            check_likelihood_support(self.model, self.cfg)
        self.tally = Tally()
        self.generate_calls = 0

    def start_processes(self, device: str | None) -> tuple[Collective, torch.device]:
        """This process's collective and device. Launched on several processes (`accelerate
        launch`, `torchrun`), each joins the process group on its own GPU (or the CPU, over
        gloo) and lm-eval gives each a share of the requests. Otherwise: `device`, else the
        target's trainer device; lm-eval's command line asks for cuda:0 unless told otherwise,
        so a machine without CUDA runs on the CPU, said in the log."""
        if launched_world_size() > 1:
            cpu = str(device) == "cpu" or not torch.cuda.is_available()
            runtime = start_runtime("ddp", "cpu" if cpu else "auto")
            return runtime.collective, runtime.device
        if not device:
            return Collective(), build_node(self.target.config.trainer).resolve_device()
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            logger.warning("device %s asked for, but this machine has no CUDA: evaluating on the CPU", device)
            return Collective(), torch.device("cpu")
        return Collective(), torch.device(device)

    # lm-eval's data parallelism: it shards the requests by rank, then gathers through these.

    @property
    def rank(self) -> int:
        return self.collective.rank

    @property
    def world_size(self) -> int:
        return self.collective.world_size

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's `tensor` along dim 0 (a 0-d tensor, lm-eval's request counts: stacked)."""
        return self.collective.cat(tensor.reshape(-1) if tensor.dim() == 0 else tensor)

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any]:
        return self.collective.gather_objects(obj)

    def barrier(self) -> None:
        self.collective.barrier()

    # lm-eval's TemplateLM interface ---------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def tokenizer_name(self) -> str:
        return str(self.target.model).replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        extra = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        ids = self.tokenizer(string, **extra)["input_ids"]
        if self.add_bos_token and add_special_tokens is not False and ids[:1] != [self.tokenizer.bos_token_id]:
            ids = [self.tokenizer.bos_token_id, *ids]
        return ids

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(
                f"--apply_chat_template: the tokenizer of {self.target.model} has no chat template; "
                f"drop the flag, or evaluate a checkpoint whose tokenizer has one"
            )
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        check_likelihood_support(self.model, self.cfg)
        began = time.perf_counter()
        results = []
        for strings, context, continuation in tqdm(requests, desc="loglikelihood", disable=disable_tqdm):
            pair = (context, continuation)
            estimate = log_likelihoods(
                self.model, [pair], mc_num=self.mc_num, mc_batch_size=self.mc_batch_size, seed=self.seed, cfg=self.cfg
            )[0]
            greedy = greedy_matches(self.model, [pair], cfg=self.cfg)[0] if self.check_greedy else False
            results.append((estimate, bool(greedy)))
            self.cache_hook.add_partial("loglikelihood", strings, results[-1])  # lm-eval's cache key: the texts
        self.tally.likelihoods += len(requests)
        self.tally.likelihood_s += time.perf_counter() - began
        return results

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        raise DllmError(
            "loglikelihood_rolling (perplexity tasks such as wikitext) is not supported by --model dllm: a "
            "diffusion model's likelihood is a Monte Carlo bound per continuation, not a rolling token-by-token "
            "score; choose generation or multiple-choice tasks"
        )

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Decode in batches of `batch_size` requests that share a generation length, in the
        order given; each batch's noise comes from its own seeded generator."""
        for index, request in enumerate(requests):
            if not request.args[0]:
                raise DllmError(
                    f"generate_until request {index} has an empty context: a diffusion decoder needs a prompt to "
                    "continue; check the task's doc_to_text"
                )
        outputs: list[str | None] = [None] * len(requests)
        lengths = [self.request_gen_length(request.args[1]) for request in requests]
        for length in sorted(set(lengths)):
            decoded_length = self.decodable_length(length)
            chosen = [i for i in range(len(requests)) if lengths[i] == length]
            batches = [chosen[i : i + self.batch_size] for i in range(0, len(chosen), self.batch_size)]
            for batch in tqdm(batches, desc=f"generate_until ({length} tokens)", disable=disable_tqdm):
                texts = self.decode([requests[i].args for i in batch], decoded_length, length)
                for i, text in zip(batch, texts):
                    outputs[i] = text
        return outputs  # type: ignore[return-value]

    def decodable_length(self, length: int) -> int:
        """`length`, or, for a request's `max_gen_toks` the sampler's blocks do not divide, the
        next length they do (its completion is cut back to `length` tokens). An explicit
        `gen_length` the sampler cannot decode was refused at start-up."""
        for candidate in range(length, length + MAX_BLOCK_ROUNDING):
            try:
                self.sampler.check_gen_length(candidate, self.model.block_size)
                return candidate
            except ConfigError:
                continue
        self.sampler.check_gen_length(length, self.model.block_size)  # raises, naming the fix
        return length

    def decode(self, args: list[tuple[str, dict[str, Any]]], gen_length: int, keep: int) -> list[str]:
        """Decode `gen_length` tokens after each context; each completion's first `keep` tokens,
        cut at the model's EOS and then before the first of the request's `until` strings."""
        seed = batch_seed(self.seed, self.generate_calls)
        self.generate_calls += 1
        generator = torch.Generator(device=self.device).manual_seed(seed)
        contexts = [context for context, _ in args]
        if self.add_bos_token:  # as text: decode_batch tokenises (and pads) the batch itself
            bos = self.tokenizer.bos_token
            contexts = [context if context.startswith(bos) else bos + context for context in contexts]
        decoded = decode_batch(
            self.model, self.tokenizer, self.sampler, contexts, gen_length, generator,
            max_batch_rows=self.max_batch_rows,
        )  # fmt: skip
        self.tally.completions += len(contexts)
        self.tally.positions += len(contexts) * gen_length
        self.tally.forwards += int(decoded.output.nfe) * len(contexts)
        self.tally.generation_s += decoded.elapsed
        kept = (
            decoded.texts
            if keep == gen_length
            else decode_completions(self.tokenizer, decoded.completions[:, :keep])[0]
        )
        texts = []
        for (context, gen_kwargs), text in zip(args, kept):
            texts.append(stop_at(text, stop_strings(gen_kwargs.get("until"))))
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), texts[-1])
        return texts

    def default_gen_length(self) -> int:
        return self.gen_length or DEFAULT_GEN_LENGTH

    def request_gen_length(self, gen_kwargs: dict[str, Any]) -> int:
        """The adapter's `gen_length`, else the request's `max_gen_toks`, else 256."""
        if self.gen_length is not None:
            return self.gen_length
        return int(gen_kwargs.get("max_gen_toks") or self.default_gen_length())

    def get_model_info(self) -> dict[str, Any]:
        """The setup a reported number needs to be reproduced, with what this run measured."""
        settings = {key: value for key, value in self.sampler.settings().items()}
        return {
            "dllm": {
                "model": self.target.model,
                "run_dir": str(self.target.run_dir) if self.target.run_dir is not None else None,
                "model_class": type(self.model).__name__,
                "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
                "sampler": OmegaConf.to_container(self.target.config.sampler, resolve=True),
                "sampler_settings": settings,
                "gen_length": self.gen_length,
                "likelihood": {
                    "mc_num": self.mc_num,
                    "mc_batch_size": self.mc_batch_size,
                    "cfg": self.cfg,
                    "check_greedy": self.check_greedy,
                    "seed": self.seed,
                },
                "seed": self.seed,
                "add_bos_token": self.add_bos_token,
                "batch_size": self.batch_size,
                "max_batch_rows": self.max_batch_rows,
                "processes": self.world_size,  # the measurements below are process 0's
                **self.tally.summary(),
                "versions": {name: version(name) for name in ("dllm", "lm_eval", "torch", "transformers")},
            }
        }
