"""lm-eval models ``prt`` and ``eft``: several causal LMs combined token by token.

- ``prt`` (paper eq. 10, Alg. 2): ``base=…,reward=…[,lam=1.0]``; with ``reward=a;b`` and
  ``reward_weights=0.5;0.5`` the rewards are added first (reward arithmetic).
- ``eft`` (Mitchell et al. 2024): ``base=…,ft=…,pt=…`` (base is the target model); with
  ``ft=a;b`` and ``ft_weights=0.5;0.5`` the implicit rewards are added (EFT arithmetic).

Common model_args: ``batch_size``, ``max_length``, ``max_gen_toks``, ``device``, ``dtype``,
``trust_remote_code``.  Every model path may be a hub id, a local checkpoint or a LoRA adapter
folder.  Tokenizers are compared before any model is loaded; output layers of different
widths are combined on their shared prefix.  All combination math is ``prt_bench.prt``.

Generation runs every model with its own KV cache: one prefill, then one token per step.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
from typing import Any, Callable, Sequence

import torch
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

from prt_bench import prt
from prt_bench.lm.load import load_causal_lm, load_tokenizer
from prt_bench.lm.vocab import check_tokenizers, cut, shared_width

Combine = Callable[[Sequence[torch.Tensor]], torch.Tensor]


# --------------------------------------------------------------------------------- decoding

def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        if s:
            ids[i, width - len(s):] = torch.tensor(list(s))
            mask[i, width - len(s):] = 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 at each row's first real token (left padding)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


# gen_kwargs the combined models take, with the meaning transformers' generate() gives them; any
# other key is refused (it would otherwise be dropped without a word).
WARPERS = ("temperature", "top_k", "top_p", "min_p", "typical_p")
PROCESSORS = ("repetition_penalty", "no_repeat_ngram_size")
GEN_KWARGS = frozenset({"until", "max_gen_toks", "do_sample", *WARPERS, *PROCESSORS})


def decoding(kwargs: dict[str, Any]) -> tuple[bool, Any]:
    """(do_sample, transformers ``LogitsProcessorList``) for lm-eval's gen_kwargs.

    ``do_sample`` absent: sampling when ``temperature`` > 0 (lm-eval's tasks write
    ``temperature: 0`` for greedy).  ``do_sample=True`` samples at ``temperature`` (1 when
    absent; 0 is refused, as generate() refuses it).  The warpers (temperature, top_k, top_p,
    min_p, typical_p) act only when sampling, the processors (repetition_penalty,
    no_repeat_ngram_size) always, each as transformers' own class on the *combined*
    distribution.  Unset warpers are off: no top_k of 50 unless asked."""
    from transformers import LogitsProcessorList
    from transformers.generation import logits_process as lp

    unknown = sorted(set(kwargs) - GEN_KWARGS)
    if unknown:
        raise ValueError(f"gen_kwargs {unknown} are not supported by prt/eft (supported: {sorted(GEN_KWARGS)})")
    temperature = kwargs.get("temperature")
    do_sample = kwargs.get("do_sample")
    do_sample = (temperature is not None and float(temperature) > 0) if do_sample is None else _as_bool(do_sample)
    procs = LogitsProcessorList()
    if kwargs.get("repetition_penalty") not in (None, 1, 1.0):
        procs.append(lp.RepetitionPenaltyLogitsProcessor(float(kwargs["repetition_penalty"])))
    if kwargs.get("no_repeat_ngram_size"):
        procs.append(lp.NoRepeatNGramLogitsProcessor(int(kwargs["no_repeat_ngram_size"])))
    if do_sample:
        t = 1.0 if temperature is None else float(temperature)
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"do_sample=True needs a temperature > 0, got {temperature!r}")
        if t != 1.0:
            procs.append(lp.TemperatureLogitsWarper(t))
        if int(kwargs.get("top_k") or 0) > 0:
            procs.append(lp.TopKLogitsWarper(int(kwargs["top_k"])))
        if float(kwargs.get("top_p") or 1.0) < 1.0:
            procs.append(lp.TopPLogitsWarper(float(kwargs["top_p"])))
        if float(kwargs.get("min_p") or 0.0) > 0.0:
            procs.append(lp.MinPLogitsWarper(float(kwargs["min_p"])))
        if float(kwargs.get("typical_p") or 1.0) < 1.0:
            procs.append(lp.TypicalLogitsWarper(float(kwargs["typical_p"])))
    return do_sample, procs


def next_token(logprobs: torch.Tensor, do_sample: bool, processors: Any = None, sequences: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Greedy or sampled choice from combined log-probs, after the logits processors (which see
    ``sequences``, each row's prompt and tokens so far)."""
    scores = processors(sequences, logprobs) if processors else logprobs
    if not do_sample:
        return scores.argmax(-1)
    return torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(-1)


def refuse_nan(logits: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
    """NaN weights still "answer" (the combination reads NaN as a forbidden token, so some token
    wins); a score of them is not a result."""
    for role, x in enumerate(logits):
        if bool(torch.isnan(x).any()):
            raise FloatingPointError(f"model {role} of the combination gives NaN logits (corrupt or diverged weights?)")
    return logits


def cache_keyword(model: Any) -> str:
    """The forward keyword of the KV cache: `cache` from transformers 5.24 on (`past_key_values`
    is deprecated there and goes in 5.40), `past_key_values` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def generate(models: Sequence[Any], combine: Combine, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
             pad_id: int, eos_id: int | None, do_sample: bool = False, processors: Any = None,
             stop: Callable[[int, list[int]], bool] | None = None,
             generator: torch.Generator | None = None, vocab: int | None = None,
             device: torch.device | None = None) -> list[list[int]]:
    """Batched decoding of the combined distribution; returns the new tokens of each prompt.

    Prompts are left-padded; every model keeps its own KV cache, so after the prefill each
    step feeds one token per row.  ``stop(row, tokens)`` ends a row early (stop sequences).
    ``vocab``: combine only the first ``vocab`` logits (the tokenizer's ids; see ``cut``).
    ``device``: where the combination happens (default: the first model's); each model's logits
    are brought there (models spread by a ``device_map`` may end on another device).
    """
    from transformers import DynamicCache

    device = device or next(models[0].parameters()).device
    ids, mask = left_pad(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    caches = [DynamicCache() for _ in models]
    step_ids, step_pos = ids, positions(mask)
    sequences = ids  # what the processors see: prompts and tokens so far
    out: list[list[int]] = [[] for _ in prompts]
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    cache_args = [cache_keyword(m) for m in models]
    for _ in range(max_new_tokens):
        # logits_to_keep=1: the prefill needs the last position only, not [batch, prompt, vocab]
        logits = [m(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, use_cache=True, logits_to_keep=1,
                    **{arg: c}).logits[:, -1].to(device) for m, c, arg in zip(models, caches, cache_args)]
        token = next_token(combine(cut(refuse_nan(logits), vocab)), do_sample, processors, sequences, generator)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        if processors:
            sequences = torch.cat([sequences, token[:, None]], dim=-1)
        for row in (~done).nonzero().flatten().tolist():
            out[row].append(int(token[row]))
            if (eos_id is not None and out[row][-1] == eos_id) or (stop is not None and stop(row, out[row])):
                done[row] = True
        if bool(done.all()):
            break
        step_ids = token[:, None]
        step_pos = step_pos[:, -1:] + 1
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
    return out


# --------------------------------------------------------------------------------- the lm-eval model

def _split(value: Any) -> list[str]:
    """model_args lists use ';' (',' separates the args themselves)."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [v for v in str(value).split(";") if v]


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


LOG = logging.getLogger("prt_bench")


def probe_batch_size(fits: Callable[[int], bool], start: int) -> int:
    """The largest of start, start/2, ..., 1 for which ``fits`` holds (``fits`` returns False on
    running out of memory); 1 when none does (the first real batch then says why)."""
    size = max(1, int(start))
    while size > 1 and not fits(size):
        size //= 2
    return size


def out_of_memory(error: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU allocator's."""
    if isinstance(error, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _leave_process_group() -> None:
    """At exit of a data-parallel evaluation (accelerate launch / torchrun): leave the process
    group, so that its threads are stopped before the interpreter's teardown; a rank that exits
    with the group alive can abort there ("terminate called without an active exception", SIGABRT)
    after its results are written, and the launcher then reports the whole run failed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class CombinedLM(TemplateLM):
    """Causal LMs that share a tokenizer, scored and decoded through one combination rule.

    Under ``accelerate launch`` / ``torchrun`` (``WORLD_SIZE`` > 1) each process loads every
    model on its own device and lm-eval's evaluator gives it its share of the requests, then
    gathers the results on rank 0 (data parallel, as lm-eval's ``hf`` model does)."""

    def __init__(self, models: dict[str, str], combine: Combine, *, batch_size: Any = 8,
                 max_batch_size: Any = 64, max_length: int | None = None, max_gen_toks: int = 256,
                 device: str | None = None, dtype: str | None = "float32", trust_remote_code: Any = False,
                 device_map: str | None = None, model: str | None = None, **unknown: Any) -> None:
        super().__init__()
        # per role: `<role>_revision=` (a hub id's commit), `<role>_device_map=` (e.g. base_device_map=auto)
        revisions = {n: unknown.pop(f"{n}_revision") for n in list(models) if f"{n}_revision" in unknown}
        device_maps = {n: unknown.pop(f"{n}_device_map", device_map) for n in list(models)}
        if unknown:  # a misspelt model_arg must not pass silently
            raise TypeError(f"unknown model_args {sorted(unknown)}; see docs/lm.md for the accepted ones")
        trust = _as_bool(trust_remote_code)
        names = list(models)
        # Tokenizers first: a mismatch fails before any model weight is read.
        tokenizers = [load_tokenizer(models[n], trust_remote_code=trust, revision=revisions.get(n)) for n in names]
        check_tokenizers(tokenizers, [f"{n}={models[n]}" for n in names])
        self.tokenizer = tokenizers[0]
        templates = {n: getattr(t, "chat_template", None) for n, t in zip(names, tokenizers)}
        if len({repr(t) for t in templates.values()}) > 1:
            LOG.warning("the chat templates of %s differ; with --apply_chat_template the first's (%s=%s) is "
                        "used for every model", ", ".join(names), names[0], models[names[0]])
        self._rank, self._world_size, self.accelerator = 0, 1, None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # accelerate launch / torchrun: data parallel
            from datetime import timedelta

            from accelerate import Accelerator
            from accelerate.utils import InitProcessGroupKwargs

            on_cpu = (device is not None and str(device) == "cpu") or not torch.cuda.is_available()
            self.accelerator = Accelerator(cpu=on_cpu,  # gloo between CPU processes, else NCCL
                                           kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(weeks=52))])
            self._rank, self._world_size = self.accelerator.process_index, self.accelerator.num_processes
            atexit.register(_leave_process_group)
            if device is None or str(device).startswith("cuda"):
                device = str(self.accelerator.device)
        if device and str(device).startswith("cuda") and not torch.cuda.is_available():
            # lm-eval's CLI asks for cuda by default; its own hf model falls back the same way.
            LOG.warning("device %s is not available; using cpu", device)
            device = "cpu"
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.models = [load_causal_lm(models[n], dtype=dtype, device=str(self._device), trust_remote_code=trust,
                                      revision=revisions.get(n), device_map=device_maps[n]) for n in names]
        shared_width(self.models, [f"{n}={models[n]}" for n in names], self.tokenizer)  # covers the tokenizer
        self.vocab = len(self.tokenizer)  # combined over the tokenizer's ids, never the heads' padding
        self.combine = combine
        self.model_paths = models
        self.model_name = model  # only what lm-eval names its output folder by (`model=` in model_args)
        self.revisions = revisions
        self.device_maps = {n: m for n, m in device_maps.items() if m is not None}
        self.max_gen_toks = int(max_gen_toks)
        self._max_length = int(max_length) if max_length else min(
            getattr(m.config, "max_position_embeddings", 2048) or 2048 for m in self.models)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eot_token_id
        if str(batch_size).startswith("auto"):
            self.batch_size = self.detect_batch_size(int(max_batch_size))
        else:
            self.batch_size = int(batch_size)

    @torch.no_grad()
    def detect_batch_size(self, start: int) -> int:
        """``batch_size=auto``: the largest of max_batch_size (64), 32, ... 1 at which every model
        runs a batch of max_length tokens together (each keeping its last position's logits, as
        decoding does); across processes the smallest any found.  Said in the log."""
        length = self.max_length

        def fits(size: int) -> bool:
            ids = torch.full((size, length), self.pad_id, dtype=torch.long, device=self.device)
            try:
                self.combine(cut([m(input_ids=ids, logits_to_keep=1).logits.to(self.device) for m in self.models],
                                 self.vocab))
                return True
            except Exception as e:  # noqa: BLE001 - only running out of memory means "smaller"
                if not out_of_memory(e):
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                return False

        size = probe_batch_size(fits, start)
        if self.world_size > 1:
            size = int(self.all_gather(torch.tensor([size], device=self.device)).min())
        LOG.warning("batch_size=auto: %d (largest of %d, %d, ... 1 that fits %d models at %d tokens)",
                    size, start, start // 2, len(self.models), length)
        return size

    # --- data parallel (lm-eval's evaluator shards the requests by rank and gathers the results)
    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.world_size <= 1 else self.accelerator.gather(tensor)

    def gather_object(self, obj: Any, dst: int = 0) -> Any:
        if self.world_size <= 1:
            return [obj]
        gathered = [None] * self.world_size if self.rank == dst else None
        torch.distributed.gather_object(obj=obj, object_gather_list=gathered, dst=dst)
        return gathered

    def barrier(self) -> None:
        if self.world_size > 1:
            self.accelerator.wait_for_everyone()

    def _log_share(self, kind: str, n: int) -> None:
        if self.world_size > 1:
            LOG.warning("rank %d of %d: %d %s requests", self.rank, self.world_size, n, kind)

    def get_model_info(self) -> dict[str, Any]:
        """What lm-eval writes into its results' ``config``: per role, the id or folder, the hub
        commit or the folder's content hash, the dtype and the parameter count."""
        from prt_bench.lm.load import model_identity

        roles = {}
        for (role, spec), model in zip(self.model_paths.items(), self.models):
            roles[role] = {**model_identity(spec, model, self.revisions.get(role)), "dtype": str(next(model.parameters()).dtype),
                           "num_parameters": sum(p.numel() for p in model.parameters()),
                           **({"device_map": self.device_maps[role]} if role in self.device_maps else {})}
        return {"prt_bench_models": roles, "prt_bench_batch_size": self.batch_size,
                "prt_bench_processes": self.world_size}

    # --- what lm-eval asks of a TemplateLM
    @property
    def device(self) -> torch.device:  # lm-eval's LM has it only from 0.4.8 or so
        return self._device

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.eot_token_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        bos = self.tokenizer.bos_token
        if add_special_tokens is None:
            add_special_tokens = not (bos and string.startswith(bos))
        return self.tokenizer.encode(string, add_special_tokens=add_special_tokens)

    # --- scoring
    @torch.no_grad()
    def combined_logprobs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Combined log-probs at positions ``start:`` of a right-padded batch.

        Only the scored positions go through the output layers and the float32 combination.
        """
        keep = torch.arange(start, input_ids.shape[1], device=input_ids.device)
        logits = [m(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits.to(self.device)
                  for m in self.models]
        return self.combine(cut(refuse_nan(logits), self.vocab))

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        # Longest first (lm-eval's habit): the first batch shows at once whether memory suffices.
        if kwargs.get("log_share", True):
            self._log_share("loglikelihood", len(requests))
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][1]) - len(requests[i][2]))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), desc="loglikelihood", disable=disable_tqdm)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            rows, spans = [], []
            for i in chunk:
                _, context, continuation = requests[i]
                if not continuation:
                    raise ValueError("loglikelihood needs a non-empty continuation")
                whole = (list(context) + list(continuation))[-(self.max_length + 1):]
                rows.append(whole[:-1])
                spans.append(min(len(continuation), len(whole) - 1))  # a continuation cut by max_length
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, r in enumerate(rows):
                ids[j, :len(r)] = torch.tensor(r)
                mask[j, :len(r)] = 1
            start = min(len(r) - cont for r, cont in zip(rows, spans))
            logprobs = self.combined_logprobs(ids.to(self.device), mask.to(self.device), start).cpu()
            for j, i in enumerate(chunk):
                n, cont = len(rows[j]), spans[j]
                target = torch.tensor(list(requests[i][2])[-cont:])
                lp = logprobs[j, n - cont - start:n - start]
                score = float(lp.gather(-1, target[:, None]).sum())
                greedy = bool((lp.argmax(-1) == target).all())
                results[i] = (score, greedy)
                if requests[i][0] is not None and getattr(self, "cache_hook", None) is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], (score, greedy))
            bar.update(len(chunk))
        bar.close()
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        self._log_share("loglikelihood_rolling", len(requests))
        scores = []
        for (string,) in tqdm([r.args for r in requests], desc="loglikelihood_rolling", disable=disable_tqdm):
            windows = [(None,) + lm_utils.make_disjoint_window(w) for w in lm_utils.get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length, context_len=1)]
            scores.append(sum(s for s, _ in self._loglikelihood_tokens(windows, disable_tqdm=True, log_share=False)))
        return scores

    # --- generation
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        self._log_share("generate_until", len(requests))
        results: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(repr(sorted(r.args[1].items())), []).append(i)
        bar = tqdm(total=len(requests), desc="generate_until", disable=disable_tqdm)
        for indices in groups.values():
            kwargs = dict(requests[indices[0]].args[1])
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            eos = self.tokenizer.decode([self.eot_token_id])
            if eos not in until:
                until.append(eos)
            max_new = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            do_sample, processors = decoding(kwargs)
            # Longest prompt first within the group, as for scoring.
            indices = sorted(indices, key=lambda i: -len(requests[i].args[0]))
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                prompts = [self.tok_encode(requests[i].args[0])[-(self.max_length - max_new):] for i in chunk]

                def stop(row: int, tokens: list[int]) -> bool:
                    tail = self.tokenizer.decode(tokens[-64:])
                    return any(s in tail for s in until)

                new = generate(self.models, self.combine, prompts, max_new_tokens=max_new, pad_id=self.pad_id,
                               eos_id=self.eot_token_id, do_sample=do_sample, processors=processors, stop=stop,
                               vocab=self.vocab, device=self.device)
                for i, tokens in zip(chunk, new):
                    text = self.tokenizer.decode(tokens, skip_special_tokens=False)
                    for s in until:
                        text = text.split(s)[0]
                    results[i] = text
                    if getattr(self, "cache_hook", None) is not None:
                        self.cache_hook.add_partial("generate_until", requests[i].args, text)
                bar.update(len(chunk))
        bar.close()
        return results  # type: ignore[return-value]


# --------------------------------------------------------------------------------- the two registered models

def prt_combine(lam: float, weights: Sequence[float]) -> Combine:
    """logits = [base, reward_1, ...] -> eq. 10 with r = Σ w_i r_i (reward arithmetic)."""
    def combine(logits: Sequence[torch.Tensor]) -> torch.Tensor:
        return prt.prt_logprobs(logits[0], prt.combined_reward(logits[1:], weights), lam)

    return combine


def eft_combine(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """logits = [base (target), ft, pt] -> EFT."""
    return prt.eft_logprobs(*logits)


@register_model("prt")
class PRTLM(CombinedLM):
    """``base=…,reward=…[,lam=λ][,reward_weights=w1;w2 with reward=a;b]``.

    ``lam`` (eq. 10's λ; 1/λ is the reward's strength) defaults to the λ the rewards were trained
    with, read from their manifests (1 when they record none); rewards trained with different λ
    need it given."""

    def __init__(self, base: str, reward: str, lam: Any = None, reward_weights: Any = None, **common: Any):
        rewards = _split(reward)
        weights = [float(w) for w in _split(reward_weights)] if reward_weights is not None else (
            [1.0] if len(rewards) == 1 else None)
        if weights is None or len(weights) != len(rewards):
            raise ValueError(f"prt: {len(rewards)} rewards need as many reward_weights (w1;w2;...), got {reward_weights!r}")
        if not all(math.isfinite(w) for w in weights):
            raise ValueError(f"prt: reward_weights must be finite numbers, got {reward_weights!r}")
        if lam is None:
            lam = default_lam(rewards)
        if not (math.isfinite(float(lam)) and float(lam) > 0):  # before any model loads
            raise ValueError(f"prt: lam must be a finite number > 0, got {lam!r}")
        models = {"base": base, **{("reward" if len(rewards) == 1 else f"reward{i}"): r for i, r in enumerate(rewards)}}
        self.lam, self.reward_weights = float(lam), weights
        super().__init__(models, prt_combine(float(lam), weights), **common)


def default_lam(rewards: Sequence[str]) -> float:
    """The λ the rewards were trained with (their manifests), 1 when none is recorded."""
    from prt_bench.io import trained_lam

    found = {r: trained_lam(r) for r in rewards}
    values = {v for v in found.values() if v is not None}
    if len(values) > 1:
        raise ValueError(f"prt: the rewards were trained with different lam ({found}); give lam= explicitly")
    return values.pop() if values else 1.0


@register_model("eft")
class EFTLM(CombinedLM):
    """``base=…,ft=…,pt=…``: the ft model's implicit reward log π_ft − log π_pt moved onto base;
    ``ft=a;b,ft_weights=w1;w2``: several FT models of ``pt``, their implicit rewards weighted and
    summed (EFT arithmetic)."""

    def __init__(self, base: str, ft: str, pt: str, ft_weights: Any = None, **common: Any):
        fts = _split(ft)
        weights = [float(w) for w in _split(ft_weights)] if ft_weights is not None else (
            [1.0] if len(fts) == 1 else None)
        if weights is None or len(weights) != len(fts) or not all(math.isfinite(w) for w in weights):
            raise ValueError(f"eft: {len(fts)} ft models need as many finite ft_weights (w1;w2;...), "
                             f"got {ft_weights!r}")
        if len(fts) == 1 and weights == [1.0]:
            super().__init__({"base": base, "ft": ft, "pt": pt}, eft_combine, **common)
            return
        models = {"base": base, **{f"ft{i}": f for i, f in enumerate(fts)}, "pt": pt}

        def combine(logits: Sequence[torch.Tensor]) -> torch.Tensor:
            return prt.eft_sum_logprobs(logits[0], logits[1:-1], logits[-1], weights)

        self.ft_weights = weights
        super().__init__(models, combine, **common)
