"""The sampler interface, its registry, and the pieces every decoder shares.

A sampler turns prompts into completions by iterative unmasking. It returns the completions
as users read them (EOS after a stopped row's EOS) and the raw trajectory (`raw_completions`,
and `step_map`: the step of its row's decoding at which each position was revealed), which RL
estimators replay. Rows decode at their own pace (`dllm.samplers.lanes`)."""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dllm.errors import ConfigError
from dllm.registry import Registry


@dataclass
class GenerationOutput:
    """What a decoding produced, for users and for RL.

    - `sequences` [B, P+G]: the prompt, then the completion as users read it: once a row has
      stopped (an EOS with nothing masked before it), every position after its first EOS reads EOS;
    - `raw_completions` [B, G]: the completion as decoding left it, the trajectory RL replays:
      every position holds the token the sampler revealed there — also after a row's EOS, where
      decoding went on while other rows were unfinished — or the mask id where it was never
      revealed (every row had stopped first); equal to `sequences`' completion up to and
      including each row's first EOS. Left unset, the completion of `sequences`;
    - `step_map` [B, G]: the step of its own row's decoding at which the sampler revealed each
      position of `raw_completions` (each row counts its own steps, as when decoded alone; a
      sampler that `remasks` gives the step its final token was last revealed at); a
      position never revealed gets the step after the row's last one, one given in the canvas
      before decoding (`Sampler.generate`'s `canvas`) -1;
    - `nfe`: the number of forwards the decoding ran (each serving every row decoding then);
      `row_nfe` [B]: the forwards each row took part in (its nfe decoded alone).

    A block diffusion model decodes whole blocks counted from each row's position 0, so when
    P + G is not a multiple of the block the last block runs past the G tokens returned (SDAR's
    decoder returns them too: 17 new tokens for G = 16 after a 7-token prompt in blocks of 4).
    Those tokens are kept apart, for exact replay: `overhang` [B, E] and `overhang_steps` [B, E]
    (E < block_size), each row's tokens after its G up to the end of its own last block, then
    masks with step -1 (-1 also where never revealed; None for full-attention models)."""

    sequences: Tensor
    step_map: Tensor
    nfe: int
    block_size: int | None = None  # the blocks a block diffusion model decoded (None: full attention)
    overhang: Tensor | None = None
    overhang_steps: Tensor | None = None
    raw_completions: Tensor | None = None
    row_nfe: Tensor | None = None

    def __post_init__(self) -> None:
        if self.raw_completions is None:  # a sampler that fills nothing after EOS: its trajectory is its output
            self.raw_completions = self.sequences[:, self.sequences.shape[1] - self.step_map.shape[1] :]
        if self.row_nfe is None:
            self.row_nfe = torch.full((self.sequences.shape[0],), self.nfe, dtype=torch.long)

    @classmethod
    def concatenate(cls, parts: list[GenerationOutput]) -> GenerationOutput:
        """The outputs of row chunks of one batch (one canvas width), as one; `nfe` summed."""
        if len(parts) == 1:
            return parts[0]

        def joined(name: str) -> Tensor | None:
            values = [getattr(part, name) for part in parts]
            return None if values[0] is None else torch.cat(values)

        return cls(
            joined("sequences"), joined("step_map"), sum(part.nfe for part in parts), parts[0].block_size,
            joined("overhang"), joined("overhang_steps"), joined("raw_completions"), joined("row_nfe"),
        )  # fmt: skip

    def completions(self, prompt_length: int) -> Tensor:
        """[B, G] the completions as users read them (filled with EOS after a stopped row's EOS)."""
        return self.sequences[:, prompt_length:]


class Sampler(ABC):
    """Decodes `gen_length` tokens after left-padded prompts with a diffusion LM.

    Implement `decode` (the loop over a prepared `Decoding`), or override `generate` whole.
    A sampler records the arguments it was built with (`settings`): fingerprints read them, and
    copies go through the constructor again (`replace`), so its validation always runs."""

    stop_at_eos: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording_settings(cls.__init__)

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments, defaults included, as given (as diffusers'
        `register_to_config`): everything that decides this sampler's decoding."""
        return dict(self.__dict__.get("_settings", {}))

    def replace(self, **changes: Any) -> Sampler:
        """A new sampler of this type with `changes` to its settings, built (and so validated)
        by its constructor; raises `ConfigError` for a setting it does not have."""
        settings = self.settings()
        unknown = sorted(set(changes) - set(settings))
        if unknown:
            raise ConfigError(
                f"sampler {type(self).__name__} has no setting {', '.join(unknown)}; its settings: "
                f"{', '.join(settings) or 'none'}"
            )
        return type(self)(**{**settings, **changes})

    # Whether `decode` runs each row at its own pace (`dllm.samplers.lanes`); a sampler whose rows
    # move in lockstep decodes `max_batch_rows` rows at a time instead.
    per_row_progress: bool = False
    # Whether decoding may mask a revealed token again (MDPO's Running Confidence Remasking): then
    # `step_map` holds when each final token was last revealed, and no longer says which tokens
    # every earlier state held, so the decoding trajectory cannot be replayed from it.
    remasks: bool = False

    @torch.no_grad()
    def generate(
        self,
        model: torch.nn.Module,
        prompt_ids: Tensor,
        attention_mask: Tensor | None = None,
        gen_length: int = 32,
        generator: torch.Generator | list[torch.Generator] | None = None,
        max_batch_rows: int | None = None,
        canvas: Tensor | None = None,
    ) -> GenerationOutput:
        """Complete each row of `prompt_ids` [B, P]; `attention_mask` [B, P] marks real tokens
        (0 on left padding). A `generator` makes stochastic decoding reproducible: one for the
        batch, or one per row (then each row's tokens do not depend on the batch it is in).
        `max_batch_rows`: decode at most that many rows at once (None: all), the next prompt
        taking a finished row's place; memory is bounded by it, not by B. `canvas` [B, G]: tokens
        given in the completion before decoding (inpainting), the mask id where free: they stay as
        given, are never masked, and read step -1 in `step_map`."""
        self.check_gen_length(gen_length, model.block_size)
        if max_batch_rows is not None and max_batch_rows < 1:
            raise ConfigError(f"max_batch_rows must be a positive number of rows (or null: all), got {max_batch_rows}")
        rows = prompt_ids.shape[0]
        if isinstance(generator, (list, tuple)) and not self.per_row_progress:
            raise ConfigError(
                f"sampler {type(self).__name__} decodes its rows in lockstep from one generator; pass one, not a list"
            )
        if not self.per_row_progress and max_batch_rows is not None and max_batch_rows < rows:
            chunks = range(0, rows, max_batch_rows)
            return GenerationOutput.concatenate(
                [
                    self.generate(
                        model,
                        prompt_ids[i : i + max_batch_rows],
                        None if attention_mask is None else attention_mask[i : i + max_batch_rows],
                        gen_length,
                        generator,
                        canvas=None if canvas is None else canvas[i : i + max_batch_rows],
                    )  # fmt: skip
                    for i in chunks
                ]
            )
        state = Decoding.start(
            model, prompt_ids, attention_mask, gen_length, self.stop_at_eos, self.decoding_block_size(model)
        )
        if canvas is not None:
            state.fill(canvas)
        if self.per_row_progress:
            self.decode(model, state, gen_length, generator, max_batch_rows)
        else:
            self.decode(model, state, gen_length, generator)
        return state.output()

    def decoding_block_size(self, model: torch.nn.Module) -> int | None:
        """The blocks a block diffusion model decodes (its attention's blocks in this decoding,
        counted from each row's position 0): its own by default; None for full attention."""
        return model.block_size

    @abstractmethod
    def decode(
        self,
        model: torch.nn.Module,
        state: Decoding,
        gen_length: int,
        generator: torch.Generator | list[torch.Generator] | None,
        max_batch_rows: int | None = None,
    ) -> None:
        """Unmask `state.x`'s completion in place, through `state.reveal` (or `reveal_rows`),
        counting forwards with `state.count_forward`; only a sampler with `per_row_progress` is
        given `max_batch_rows` (and a list of per-row generators)."""

    def check_gen_length(self, gen_length: int, model_block_size: int | None = None) -> None:
        """Raise `ConfigError` when this sampler cannot decode `gen_length` tokens (for a model
        with blocks of `model_block_size`)."""
        if gen_length < 1:
            raise ConfigError(f"gen_length must be a positive number of tokens, got {gen_length}")


def _recording_settings(init: Callable[..., None]) -> Callable[..., None]:
    """`init`, recording its bound arguments (defaults applied) as the instance's settings; only
    the outermost constructor records (a subclass's `super().__init__` call does not)."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "_settings" not in self.__dict__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            settings: dict[str, Any] = {}
            for name, value in list(bound.arguments.items())[1:]:
                kind = signature.parameters[name].kind
                settings.update(value if kind is inspect.Parameter.VAR_KEYWORD else {name: value})
            self._settings = settings
        init(self, *args, **kwargs)

    return __init__


SAMPLERS = Registry("sampler", interface=Sampler)


@dataclass
class Decoding:
    """The state every decoder shares: the sequence `x` [B, L] (prompt, then masks), the key
    padding mask, the trajectory, the step and forward counters.

    Full-attention models decode `x` = [prompt | G masks]: the completion starts at column
    `prompt_length`. A block diffusion model decodes blocks counted from each row's own position 0
    (as SDAR's decoder): each row is left-padded by whole blocks so that all rows' blocks share
    columns, `prompt_length` is the start of the first block any row decodes, each row's prompt
    tail (its last P_b mod block tokens) sits in that block before its masks, `position_ids` are
    each row's own, and the decoding runs whole blocks past the G tokens (see
    `GenerationOutput`). `step_map` covers the columns from `prompt_length` on (-1: never revealed)."""

    x: Tensor
    key_mask: Tensor
    step_map: Tensor
    prompt_length: int
    mask_id: int
    eos_id: int | None
    prompt_ids: Tensor  # [B, P] the prompts as given
    completion_start: Tensor  # [B] column of each row's first generated token
    gen_length: int
    block_size: int | None = None
    position_ids: Tensor | None = None  # [B, L] each row's own positions (block models)
    nfe: int = 0
    row_steps: Tensor | None = None  # [B] steps each row has taken (its next step's number)
    row_nfe: list[int] | None = None  # forwards each row took part in
    # No row can have stopped before an EOS was revealed (the completion starts all masks), so
    # `all_stopped` scans the completion only from then on: one check of each step's tokens before.
    eos_revealed: bool = False
    fixed: Tensor | None = None  # [B, G] completion positions given before decoding (`fill`)

    def __post_init__(self) -> None:
        batch = self.x.shape[0]
        self.row_steps = torch.zeros(batch, dtype=torch.long, device=self.x.device)
        self.row_nfe = [0] * batch

    @functools.cached_property
    def padded(self) -> bool:
        """Whether any key is padding (then forwards need a key mask); read once per decoding."""
        return not bool(self.key_mask.all())

    def count_forward(self, rows: list[int] | None = None) -> None:
        """One forward, serving `rows` (None: every row)."""
        self.nfe += 1
        for row in range(self.x.shape[0]) if rows is None else rows:
            self.row_nfe[row] += 1

    @classmethod
    def start(
        cls,
        model: torch.nn.Module,
        prompt_ids: Tensor,
        attention_mask: Tensor | None,
        gen_length: int,
        stop_at_eos: bool,
        block_size: int | None = None,
    ) -> Decoding:
        """`block_size`: the decoding's blocks (block diffusion models), counted from each row's position 0."""
        from dllm.models.base import pad_token_id

        prompt_mask = check_prompts(model, prompt_ids, attention_mask, gen_length)
        block_size = block_size if model.block_size is not None else None
        mask_id = model.mask_token_id
        batch, length = prompt_ids.shape
        eos_id = getattr(model.config, "eos_token_id", None) if stop_at_eos else None
        common = dict(mask_id=mask_id, eos_id=eos_id, prompt_ids=prompt_ids, gen_length=gen_length)
        if block_size is None:
            return cls(
                x=torch.cat([prompt_ids, prompt_ids.new_full((batch, gen_length), mask_id)], dim=1),
                key_mask=torch.cat([prompt_mask, prompt_mask.new_ones(batch, gen_length)], dim=1),
                step_map=torch.full((batch, gen_length), -1, dtype=torch.long, device=prompt_ids.device),
                prompt_length=length,
                completion_start=torch.full((batch,), length, device=prompt_ids.device),
                **common,
            )
        x, key_mask, positions, first_block = block_layout(
            prompt_ids, prompt_mask, block_size, gen_length, pad_token_id(model), mask_id
        )
        lengths = prompt_mask.sum(1)
        return cls(
            x=x,
            key_mask=key_mask,
            step_map=torch.full((batch, x.shape[1] - first_block), -1, dtype=torch.long, device=x.device),
            prompt_length=first_block,
            completion_start=first_block + lengths % block_size,
            block_size=block_size,
            position_ids=positions,
            **common,
        )

    def fill(self, canvas: Tensor) -> None:
        """Write `canvas` [B, G] (the mask id where free) into each row's completion before decoding:
        its tokens are fixed, as a prompt's are (samplers reveal masked positions only)."""
        if canvas.shape != (self.x.shape[0], self.gen_length):
            raise ConfigError(
                f"canvas shape {tuple(canvas.shape)} must be [batch, gen_length] = {(self.x.shape[0], self.gen_length)}"
            )
        columns = self.completion_start[:, None] + torch.arange(self.gen_length, device=self.x.device)
        self.fixed = canvas != self.mask_id
        self.x.scatter_(1, columns, torch.where(self.fixed, canvas, self.x.gather(1, columns)))
        if self.eos_id is not None:
            self.eos_revealed = bool((canvas == self.eos_id).any())

    def last_columns(self) -> list[int]:
        """Per row, the column after the last one it decodes: after its G tokens (full attention),
        or at the end of the block holding its last one (block models: blocks from its position 0)."""
        ends = self.completion_start + self.gen_length
        if self.block_size is not None:
            blocks = (ends - self.prompt_length + self.block_size - 1) // self.block_size
            ends = self.prompt_length + blocks * self.block_size
        return ends.tolist()

    def completion(self) -> tuple[Tensor, Tensor]:
        """Each row's G generated tokens and their steps, [B, G] each (from its own first generated column)."""
        return self._from_completion_start(0, self.gen_length)

    def overhang(self) -> tuple[Tensor | None, Tensor | None]:
        """[B, E] tokens and steps after each row's G, to the end of its last block (then masks, step -1)."""
        if self.block_size is None:
            return None, None
        overflow = (self.prompt_length - self.completion_start - self.gen_length) % self.block_size
        extra = int(overflow.max())
        tokens, steps = self._from_completion_start(self.gen_length, extra)
        inside = torch.arange(extra, device=self.x.device) < overflow[:, None]
        return tokens.masked_fill(~inside, self.mask_id), steps.masked_fill(~inside, -1)

    def _from_completion_start(self, offset: int, width: int, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        starts = self.completion_start if rows is None else self.completion_start[rows]
        columns = starts[:, None] - self.prompt_length + offset
        columns = (columns + torch.arange(width, device=self.x.device)).clamp(max=self.step_map.shape[1] - 1)
        x, step_map = self.x[:, self.prompt_length :], self.step_map
        if rows is not None:
            x, step_map = x[rows], step_map[rows]
        return x.gather(1, columns), step_map.gather(1, columns)

    def block_masked(self, start: int, end: int) -> Tensor:
        return self.x[:, start:end] == self.mask_id

    def reveal(self, start: int, end: int, tokens: Tensor, revealed: Tensor) -> None:
        """Write `tokens` [B, end-start] where `revealed`, and record each row's step there; one
        step of every row (rows in lockstep)."""
        self.x[:, start:end] = torch.where(revealed, tokens, self.x[:, start:end])
        offset = start - self.prompt_length
        window = self.step_map[:, offset : offset + (end - start)]
        window.copy_(torch.where(revealed, self.row_steps[:, None], window))
        if self.eos_id is not None and not self.eos_revealed:
            self.eos_revealed = bool(((tokens == self.eos_id) & revealed).any())
        self.row_steps += 1

    def tokens_at(self, rows: Tensor | slice, columns: Tensor | slice) -> Tensor:
        """[S, K] the canvas tokens of `rows` [S] at `columns` [S, K], or, rows in lockstep, at the
        columns of one slice (`rows` then a slice too, when they are the whole canvas in order)."""
        if isinstance(columns, slice):
            return self.x[rows, columns]
        return self.x.view(-1).take(rows[:, None] * self.x.shape[1] + columns)

    def reveal_rows(self, rows: Tensor | slice, columns: Tensor | slice, tokens: Tensor, revealed: Tensor) -> Tensor:
        """Write `tokens` [S, K] at `columns` of canvas `rows` (see `tokens_at`) where `revealed`,
        each at its row's current step; one step of those rows. Returns the tokens there now."""
        block = self._overwrite(rows, columns, revealed, tokens, self.row_steps[rows][:, None])
        self.row_steps[rows] += 1
        return block

    def remask_rows(self, rows: Tensor | slice, columns: Tensor | slice, remasked: Tensor) -> Tensor:
        """Mask again the tokens at `columns` of canvas `rows` (see `tokens_at`) where `remasked`
        [S, K], as never revealed (step -1 until revealed again); no step passes. Returns the
        tokens there now."""
        mask = torch.full((), self.mask_id, dtype=self.x.dtype, device=self.x.device)
        never = torch.full((), -1, dtype=self.step_map.dtype, device=self.x.device)
        return self._overwrite(rows, columns, remasked, mask, never)

    def _overwrite(
        self, rows: Tensor | slice, columns: Tensor | slice, where: Tensor, tokens: Tensor, steps: Tensor
    ) -> Tensor:
        """Set the canvas at `columns` of `rows` to `tokens` and its step_map to `steps` (each
        broadcast to [S, K]) where `where` [S, K]; the tokens there now."""
        if isinstance(columns, slice):
            block = torch.where(where, tokens, self.x[rows, columns])
            self.x[rows, columns] = block
            span = slice(columns.start - self.prompt_length, columns.stop - self.prompt_length)
            self.step_map[rows, span] = torch.where(where, steps, self.step_map[rows, span])
            return block
        # flat indices: one gather and one write each (advanced indexing costs more per step)
        at = rows[:, None] * self.x.shape[1] + columns
        canvas = self.x.view(-1)
        block = torch.where(where, tokens, canvas.take(at))
        canvas.put_(at, block)
        at = rows[:, None] * self.step_map.shape[1] + columns - self.prompt_length
        step_map = self.step_map.view(-1)
        step_map.put_(at, torch.where(where, steps, step_map.take(at)))
        return block

    def stopped_in_block(self, rows: Tensor | slice, columns: Tensor | slice, block: Tensor) -> Tensor:
        """[S] bool: which of canvas `rows` have stopped (an EOS with nothing masked before it within
        their G tokens), given `block` [S, K], the tokens at their current block's `columns`. A row
        decodes its blocks in order and leaves at its first such EOS, so its earlier blocks are
        whole and hold none: its current block alone decides (no scan of the whole completion)."""
        if isinstance(columns, slice):
            columns = torch.arange(columns.start, columns.stop, device=block.device)[None, :]
        first = self.completion_start[rows][:, None]
        inside = (columns >= first) & (columns < first + self.gen_length)  # not the prompt's tail, not the overhang
        return stop_positions(block.masked_fill(~inside, -1), self.eos_id, self.mask_id) < block.shape[1]

    def all_stopped(self) -> bool:
        """Every row has an EOS with nothing masked before it within its G tokens."""
        if not self.eos_revealed:
            return False
        completion = self.completion()[0]
        return bool((stop_positions(completion, self.eos_id, self.mask_id) < completion.shape[1]).all())

    def output(self) -> GenerationOutput:
        """The users' completions (filled with EOS after each stopped row's EOS) and the raw
        trajectory: what every position was revealed as, and when (see `GenerationOutput`)."""
        raw, step_map = self.completion()
        # never revealed (decoding stopped at EOS first): masked in every state the sampler saw,
        # so after its row's last step, as TraceRL's reference pads a response's steps with max + 1
        # given in the canvas (`fill`): -1, in every state before the first step
        never = step_map < 0 if self.fixed is None else (step_map < 0) & ~self.fixed
        step_map = torch.where(never, self.row_steps[:, None], step_map)
        sequences = torch.cat([self.prompt_ids, fill_after_eos(raw, self.eos_id, self.mask_id)], dim=1)
        overhang, overhang_steps = self.overhang()
        return GenerationOutput(
            sequences, step_map, self.nfe, self.block_size, overhang, overhang_steps, raw_completions=raw,
            # a decoder that counts `nfe` alone (rows in lockstep): each row took part in every forward
            row_nfe=torch.tensor(self.row_nfe, dtype=torch.long) if any(self.row_nfe) else None,
        )  # fmt: skip


def block_layout(
    prompt_ids: Tensor, prompt_mask: Tensor, block_size: int, gen_length: int, pad_id: int, mask_id: int
) -> tuple[Tensor, Tensor, Tensor, int]:
    """The canvas a block diffusion model decodes left-padded prompts [B, P] on, with blocks
    counted from each row's own position 0: (x [B, L], key mask [B, L], position ids [B, L],
    first decoded column). Each row is shifted by whole blocks so that every row's block
    holding its prompt's end starts at that column; its masks follow its prompt, through
    enough whole blocks for every row's G tokens."""
    lengths = prompt_mask.sum(1)
    whole_blocks = lengths // block_size
    first_block = int(whole_blocks.max()) * block_size
    num_blocks = -(-(int((lengths % block_size).max()) + gen_length) // block_size)
    shift = first_block - whole_blocks * block_size  # column of each row's position 0
    positions = torch.arange(first_block + num_blocks * block_size, device=prompt_ids.device) - shift[:, None]
    # position i of row b is column P - lengths[b] + i of its left-padded prompt
    source = (positions + prompt_ids.shape[1] - lengths[:, None]).clamp(0, prompt_ids.shape[1] - 1)
    in_prompt = (positions >= 0) & (positions < lengths[:, None])
    x = torch.where(in_prompt, prompt_ids.gather(1, source), mask_id)
    x = x.masked_fill(positions < 0, pad_id)
    return x, (positions >= 0).to(prompt_mask.dtype), positions.clamp(min=0), first_block


def check_prompts(model: torch.nn.Module, prompt_ids: Tensor, attention_mask: Tensor | None, gen_length: int) -> Tensor:
    """Validate a prompt batch for `model`; return its attention mask (all ones if None)."""
    if prompt_ids.dim() != 2 or prompt_ids.shape[1] == 0:
        raise ConfigError(f"prompt_ids must be a non-empty [batch, length] tensor, got shape {tuple(prompt_ids.shape)}")
    if attention_mask is None:
        attention_mask = torch.ones_like(prompt_ids)
    elif attention_mask.shape != prompt_ids.shape:
        raise ConfigError(
            f"attention_mask shape {tuple(attention_mask.shape)} differs from prompt_ids "
            f"shape {tuple(prompt_ids.shape)}"
        )
    if attention_mask.shape[1] and not bool(attention_mask[:, -1].all()):
        raise ConfigError(
            "prompts must be left-padded (the last prompt position of every row is a real "
            "token); set tokenizer.padding_side = 'left'"
        )
    if bool((prompt_ids[attention_mask.bool()] == model.mask_token_id).any()):
        raise ConfigError(f"a prompt contains the mask token (id {model.mask_token_id}); prompts must be clean text")
    from dllm.models.base import context_length

    max_length = context_length(model)
    total = prompt_ids.shape[1] + gen_length
    if max_length is not None and total > max_length:
        raise ConfigError(
            f"prompt ({prompt_ids.shape[1]} tokens) + gen_length ({gen_length}) = {total} tokens "
            f"exceeds the model's context of {max_length}; shorten the prompt or gen_length"
        )
    return attention_mask


def stop_positions(completion: Tensor, eos_token_id: int | None, mask_token_id: int) -> Tensor:
    """[B] index of each row's first EOS that has no mask before it, or G where there is none.

    Such a row has stopped: nothing before its EOS can change, and whatever a decoder puts
    after it is discarded.
    """
    length = completion.shape[1]
    if eos_token_id is None:
        return torch.full((completion.shape[0],), length, device=completion.device)
    is_eos = completion == eos_token_id
    first_eos = torch.where(is_eos.any(1), is_eos.float().argmax(1), length)
    positions = torch.arange(length, device=completion.device)
    masked_before = ((completion == mask_token_id) & (positions < first_eos[:, None])).any(1)
    return torch.where(masked_before, length, first_eos)


def fill_after_eos(completion: Tensor, eos_token_id: int | None, mask_token_id: int) -> Tensor:
    """`completion` with EOS after each stopped row's EOS: the text users read ends there."""
    if eos_token_id is None:
        return completion
    stop = stop_positions(completion, eos_token_id, mask_token_id)
    positions = torch.arange(completion.shape[1], device=completion.device)
    return completion.masked_fill(positions[None, :] > stop[:, None], eos_token_id)
