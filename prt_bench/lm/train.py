"""The language recipes: supervised fine-tuning (FT) and Portable Reward Tuning (PRT).

Both read a JSONL of ``{"prompt": ..., "response": ...}`` rows and train on the response
tokens only.  They share the data and the loop below and differ only in the loss:

- **FT**: cross-entropy of the model itself.
- **PRT** (paper eq. 6, Alg. 1): the reward ``r`` starts as a copy of the base; the base is
  frozen, in eval mode and run without autograd; ``loss = CE(softmax(log π_base + r/λ), y)
  − α · H(softmax(r))`` (eq. 12), all in ``prt_bench.prt.prt_loss``.  The base's logits come
  from ``prt_bench.lm.base_pass``: each example's computed once (on its own), kept in memory or
  in a cache shared by every PRT run on the same base and data, and exactly what recomputing
  them at every step gives.

With ``lora=True`` the trained model (FT model or reward) is a peft LoRA adapter (paper
App. H); for PRT the frozen base is then the same weights with the adapter switched off.
The output folder holds a Hugging Face checkpoint (safetensors, or the adapter as peft saves
it), the tokenizer and ``prt_manifest.json``.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from prt_bench.lm.vocab import cut
from prt_bench.recipe import RecipeConfig

IGNORE = -100
METHODS = ("ft", "prt")


# --------------------------------------------------------------------------------- data

def read_pairs(path: str | Path) -> list[dict[str, str]]:
    """Rows of a prompt/response JSONL, with a clear error for a malformed line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) \
                    or not isinstance(row.get("response"), str):
                raise ValueError(f"{path}:{n}: each line needs string fields 'prompt' and 'response'")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path} holds no prompt/response rows")
    return rows


def uses_chat_template(tokenizer, chat_template: bool | None) -> bool:
    """None: use the tokenizer's chat template when it has one; True: require it; False: plain."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if chat_template and not has:
        raise ValueError("chat_template=True but the tokenizer has no chat template")
    return has if chat_template is None else bool(chat_template)


def encode_pair(tokenizer, prompt: str, response: str, max_length: int, chat: bool) -> tuple[list[int], list[int]]:
    """Token ids and labels (prompt masked with -100) of one example.

    Plain format: ``prompt + response + eos`` with nothing inserted between, so an evaluation
    prompt written the same way continues exactly where training did.  Chat format: the
    tokenizer's template with the prompt as the user turn and the response as the assistant
    turn.  Over-long examples lose the start of the prompt first, then the end of the response.
    """
    if chat:
        user = [{"role": "user", "content": prompt}]
        prompt_text = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": response}], tokenize=False)
        if not full_text.startswith(prompt_text):
            raise ValueError("the chat template does not render the prompt as a prefix of the conversation")
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    else:
        prompt_ids = tokenizer(prompt)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    response_ids = response_ids[:max_length - 1]
    prompt_ids = prompt_ids[max(0, len(prompt_ids) - (max_length - len(response_ids))):]
    return prompt_ids + response_ids, [IGNORE] * len(prompt_ids) + response_ids


def pad_batch(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-padded input_ids / attention_mask / labels tensors."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(examples):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        labels[i, :len(lab)] = torch.tensor(lab)
        mask[i, :len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def batches(examples: list, batch_size: int, pad_id: int, generator) -> Iterator[dict[str, Any]]:
    """One epoch of shuffled, padded batches; ``index`` holds each row's example number."""
    import torch

    order = torch.randperm(len(examples), generator=generator).tolist()
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        yield {**pad_batch([examples[i] for i in chosen], pad_id), "index": torch.tensor(chosen)}


# --------------------------------------------------------------------------------- losses

def scored_span(batch: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Model inputs that ask for logits only where a label is scored, and those labels.

    Logits at position t predict token t+1; only the span from the first to the last response
    token of the batch is kept (``logits_to_keep``), which spares the output layer and the
    float32 log-softmaxes over the prompts: [batch, length, vocab] is large for real vocabularies.
    """
    import torch

    labels = batch["labels"][:, 1:]
    scored = (labels != IGNORE).any(0).nonzero().flatten()
    lo, hi = (int(scored[0]), int(scored[-1]) + 1) if len(scored) else (0, 1)
    keep = torch.arange(lo, hi, device=labels.device)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "logits_to_keep": keep}
    return inputs, labels[:, lo:hi]


def ft_loss(model, batch: dict[str, Any]):
    """Next-token cross-entropy on the response tokens."""
    import torch.nn.functional as F

    inputs, labels = scored_span(batch)
    logits = model(**inputs).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE)


def prt_loss(reward, base, batch: dict[str, Any], lam: float = 1.0, alpha: float = 0.0, vocab: int | None = None):
    """Eq. 6 + eq. 12 on the response tokens; the base is frozen and runs without autograd.
    ``vocab``: the distribution is over the first ``vocab`` ids (the tokenizer's), as the
    combination at inference is (``prt_bench.lm.vocab.cut``); a wider head's padding rows stay out.

    ``base``: a ``BasePass`` (what training uses: the batch's rows come from its ``index``), a
    frozen model run on the batch itself, or None for a LoRA reward: the base is the reward's
    own weights with the adapter switched off (and the model briefly in eval mode).
    """
    import torch

    from prt_bench import prt
    from prt_bench.lm.base_pass import BasePass

    inputs, labels = scored_span(batch)
    cached = isinstance(base, BasePass)
    if cached:
        keep = inputs["logits_to_keep"]
        base_logits = base.batch(batch["index"].tolist(), int(keep[0]), int(keep[-1]) + 1)
    else:
        with torch.no_grad():
            if base is None:
                with adapter_off(reward):
                    base_logits = reward(**inputs).logits
            else:
                base_logits = base(**inputs).logits
    reward_logits = reward(**inputs).logits
    base_logits, reward_logits = cut([base_logits, reward_logits], vocab)
    return prt.prt_loss(base_logits, reward_logits, labels, lam=lam, alpha=alpha, ignore_index=IGNORE,
                        base_is_logprobs=cached)


def training_loss(method: str, model, base, batch, lam: float = 1.0, alpha: float = 0.0, vocab: int | None = None):
    if method == "ft":
        return ft_loss(model, batch)
    return prt_loss(model, base, batch, lam=lam, alpha=alpha, vocab=vocab)


# --------------------------------------------------------------------------------- models

@contextmanager
def eval_mode(model):
    """The model in eval mode (no dropout) for a while, then as it was."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def adapter_off(model):
    """A LoRA model as its base: adapter disabled, eval mode (no dropout), then as it was."""
    with eval_mode(model), model.disable_adapter():
        yield model


def load_frozen(base: str | Path, *, dtype: Any, device: str, trust_remote_code: bool):
    """A copy of the base that never trains: no gradients, eval mode."""
    from prt_bench.lm.load import load_causal_lm

    frozen = load_causal_lm(base, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    frozen.requires_grad_(False)
    return frozen.eval()


def base_pass_for(run: "Trainee", base: str | Path, examples: list, vocab: int, *, lora: bool, dtype: Any,
                  device: str, trust_remote_code: bool, cache: str | Path | None, budget_mb: float | None,
                  progress: bool):
    """The ``BasePass`` of a PRT run: computed up front with the untrained reward when it fits its
    budget, else at every step with a frozen copy of the base (a LoRA reward: its adapter off)."""
    from prt_bench.lm.base_pass import CACHE_ENV, BasePass, key
    from prt_bench.lm.load import model_identity

    cache = cache or os.environ.get(CACHE_ENV)
    cache_file = None
    if cache:
        name = key(model_identity(base), examples, vocab, str(dtype), str(device), "lora-off" if lora else "frozen")
        cache_file = Path(cache) / f"{name}.safetensors"
    base_pass = BasePass(None, examples, vocab, device=device, budget_mb=budget_mb, cache_file=cache_file,
                         progress=progress)
    if lora or base_pass.fits:
        # Before the first update the reward *is* the base (eq. 6 starts it as a copy), so the pass
        # is computed with it -- no frozen copy is ever loaded -- in eval mode (no dropout), and a
        # LoRA reward with its adapter off, which is its base at every step.
        def forward(ids, keep):
            with adapter_off(run.model) if lora else eval_mode(run.model):
                return run.model(input_ids=ids, logits_to_keep=keep).logits
    else:  # recomputed at every step, while the reward moves: a frozen copy of the base
        frozen = load_frozen(base, dtype=dtype, device=device, trust_remote_code=trust_remote_code)

        def forward(ids, keep):
            return frozen(input_ids=ids, logits_to_keep=keep).logits
    base_pass.forward = forward
    return base_pass.prepare()


@dataclass
class Trainee:
    """What a run trains (the FT model or the reward) and, for PRT, the frozen base."""

    model: Any
    base: Any  # None for FT, for a LoRA reward (the model with its adapter off) and with frozen_base=False
    tokenizer: Any


def prepare_models(method: str, base: str | Path, *, lora: bool = False, lora_r: int = 8, lora_alpha: int = 16,
                   lora_dropout: float = 0.0, lora_targets: str | list[str] = "all-linear", device: str = "cpu",
                   dtype: Any = None, trust_remote_code: bool = False, frozen_base: bool = True) -> Trainee:
    """Load the base; the trained model starts as a copy of it (the PRT reward too, eq. 6).
    ``frozen_base=False``: PRT's frozen copy is left for ``base_pass_for`` to load if needed."""
    from prt_bench.lm.load import load_causal_lm, load_tokenizer

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if Path(base).is_dir():  # an adapter records its base's path: make it valid from anywhere
        base = str(Path(base).resolve())
    tokenizer = load_tokenizer(base, trust_remote_code=trust_remote_code)
    model = load_causal_lm(base, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    frozen = None
    if lora:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                            target_modules=lora_targets, task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
    elif method == "prt" and frozen_base:
        frozen = load_frozen(base, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    if model.config.pad_token_id is None and tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.train()
    return Trainee(model=model, base=frozen, tokenizer=tokenizer)


def make_optimizer(model, lr: float, weight_decay: float, total_steps: int, warmup: float, schedule: str):
    """AdamW with linear warm-up, then cosine or linear decay (the paper: cosine)."""
    import torch
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warmup_steps = int(warmup) if warmup >= 1 else math.ceil(warmup * total_steps)
    scheduler = get_scheduler(schedule, optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)
    return optimizer, scheduler


# --------------------------------------------------------------------------------- several processes

STRATEGIES = ("ddp", "fsdp")
MIXED_PRECISION = ("no", "bf16")


@dataclass
class Parallel:
    """The processes of a run started by torchrun or ``accelerate launch`` (``WORLD_SIZE`` > 1).

    Each takes its rows of every global batch (``rows[rank::world]``), so the recipe's
    ``batch_size`` is the batch of the whole run whatever the process count, and the loss is
    scaled so that the averaged gradient is that of the global batch's token mean -- the
    gradient one process computes.  ``ddp``: torch's DistributedDataParallel; ``fsdp``: torch's
    ``fully_shard`` (FSDP2) on every decoder layer and the root, as accelerate's FSDP2 plugin does
    on GPUs (accelerate maps processes without GPUs to DDP, so its FSDP path cannot run on the
    CPU machines the tests use; these are the same torch calls, on every device).  The PRT base is
    frozen: under fsdp it is sharded the same way, and it never has gradients or optimizer state.
    """

    strategy: str
    rank: int
    world: int
    device: str
    created_group: bool = False

    @classmethod
    def from_env(cls, strategy: str, device: str) -> "Parallel | None":
        import torch
        import torch.distributed as dist

        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if str(device).startswith("cuda"):
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        created = not dist.is_initialized()
        if created:
            dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
        return cls(strategy, dist.get_rank(), dist.get_world_size(), device, created)

    def shard(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v[self.rank::self.world] for k, v in batch.items()}

    def wrap(self, model, mixed_precision: str, trained: bool = True):
        import torch

        if self.strategy == "fsdp":
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
                if mixed_precision == "bf16" else MixedPrecisionPolicy()
            for layer in decoder_layers(model):
                fully_shard(layer, mp_policy=policy)
            fully_shard(model, mp_policy=policy)
            return model
        if not trained:  # DDP has nothing to do for a model without gradients: every process holds it
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[torch.device(self.device).index]
                                       if self.device.startswith("cuda") else None)

    def total(self, value: float) -> float:
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t)

    def full_state_dict(self, model) -> dict[str, Any]:
        """The unsharded weights (every process takes part; rank 0 keeps them, on the CPU)."""
        if self.strategy == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return unwrap(model).state_dict()

    def close(self) -> None:
        import torch.distributed as dist

        dist.barrier()
        if self.created_group:
            dist.destroy_process_group()


def decoder_layers(model) -> list:
    """The repeated blocks of a Hugging Face causal LM (the units FSDP shards one at a time)."""
    classes = set(getattr(unwrap(model), "_no_split_modules", None) or [])
    found = [m for m in model.modules() if type(m).__name__ in classes]
    if not found:
        raise ValueError(f"fsdp: {type(unwrap(model)).__name__} names no decoder layer class (_no_split_modules)")
    return found


def unwrap(model):
    """The model inside DistributedDataParallel (FSDP2 changes the module in place)."""
    return getattr(model, "module", model)


def autocast(device: str, mixed_precision: str):
    import contextlib

    import torch

    if mixed_precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


# --------------------------------------------------------------------------------- the recipe

@dataclass(frozen=True)
class LMTrainConfig(RecipeConfig):
    """The recipe's hyperparameters: its keywords, a suite's `train:` keys, the CLI's options and
    the manifest's record (``alpha`` and ``seed`` are the suite's own axes, passed apart)."""

    lam: float = field(default=1.0, metadata={"help": "λ of eq. 6: v = log π_base + r / λ (PRT)."})
    lora: bool = field(default=False, metadata={"help": "Train a peft LoRA adapter instead of all weights.",
                                                "flag": "--lora/--full"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lr: float = field(default=2e-5, metadata={"help": "Peak learning rate (AdamW)."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the data (unless --max-steps)."})
    max_steps: Optional[int] = field(default=None, metadata={"help": "Optimizer steps; overrides --epochs."})
    batch_size: int = field(default=8, metadata={"help": "Examples per forward pass."})
    grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    max_length: int = field(default=512, metadata={"help": "Tokens per example (prompt cut first)."})
    warmup: float = field(default=0.03, metadata={"help": "Warm-up: fraction of steps (<1) or step count."})
    schedule: str = field(default="cosine", metadata={"help": "cosine | linear | constant_with_warmup."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clip."})
    chat_template: Optional[bool] = field(default=None, metadata={
        "help": "Force the tokenizer's chat template or the plain format (default: the template when the "
                "tokenizer has one).", "flag": "--chat-template/--plain"})
    dtype: Optional[str] = field(default=None, metadata={"help": "float32 / bfloat16 / float16 (default: the "
                                                                "checkpoint's)."})
    mixed_precision: str = field(default="no", metadata={
        "help": "no | bf16: bf16 compute (autocast; FSDP's param dtype) over float32 weights and optimizer "
                "state -- the master copy that pure-bf16 training lacks."})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "Recompute activations in the backward pass (less memory, about a third more compute).",
        "flag": "--gradient-checkpointing/--no-gradient-checkpointing"})
    strategy: str = field(default="ddp", metadata={
        "help": "Under torchrun / accelerate launch: ddp (every process holds the whole model) or fsdp "
                "(torch's fully_shard per decoder layer: weights, gradients and optimizer state sharded)."})


def train_lm(method: str, base: str | Path, data: str | Path, out: str | Path, *, alpha: float = 0.0, seed: int = 0,
             trust_remote_code: bool = False, device: str | None = None, progress: bool = True,
             config: LMTrainConfig | None = None, base_cache: str | Path | None = None,
             base_cache_mb: float | None = None, **options: Any) -> Path:
    """Train an FT model (``method="ft"``) or a PRT reward (``method="prt"``) on ``data``; returns ``out``.

    The hyperparameters are ``config``'s or ``options`` (keywords of ``LMTrainConfig``).
    ``max_steps`` (optimizer steps) overrides ``epochs``; ``warmup`` below 1 is a fraction of
    the steps, otherwise a step count.  Same seed on CPU gives identical weights.
    PRT: ``base_cache`` (default ``$PRT_BENCH_BASE_PASS_CACHE``) is a folder where the base's
    pass over the data is kept for other runs; ``base_cache_mb`` the most it may take (default
    ``$PRT_BENCH_BASE_PASS_MB`` or 2048; above it the base runs at every step).  Neither
    changes a number: see ``prt_bench.lm.base_pass``.
    """
    import torch
    from tqdm.auto import tqdm

    from prt_bench.io import file_hash, publish_dir, staging_dir, write_manifest
    from prt_bench.lm.load import model_identity

    c = config or LMTrainConfig.from_options(options)
    lam, lr, max_steps, batch_size, grad_accum, max_length = c.lam, c.lr, c.max_steps, c.batch_size, c.grad_accum, \
        c.max_length
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a finite number > 0, got {lam}")
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    if max_steps is not None and max_steps < 1:  # 0 used to mean "use epochs" silently
        raise ValueError(f"max_steps must be at least 1 (or None for epochs), got {max_steps}")
    if batch_size < 1 or grad_accum < 1 or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"batch_size and grad_accum must be >= 1 and lr a finite number > 0, "
                         f"got {batch_size}, {grad_accum}, {lr}")
    if c.strategy not in STRATEGIES or c.mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"strategy must be one of {STRATEGIES} and mixed_precision one of {MIXED_PRECISION}, "
                         f"got {c.strategy!r}, {c.mixed_precision!r}")
    if c.mixed_precision == "bf16" and c.dtype not in (None, "float32", "fp32"):
        raise ValueError(f"mixed_precision=bf16 keeps float32 weights (the master copy); dtype={c.dtype!r} "
                         f"would train in that dtype instead -- leave dtype unset or float32")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        # a stale adapter_config.json from another run would make every loader use that adapter
        what = "a file" if not out.is_dir() else f"not empty ({', '.join(sorted(p.name for p in out.iterdir())[:5])})"
        raise FileExistsError(f"--out {out} is {what}; give a new or empty folder")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    parallel = Parallel.from_env(c.strategy, device)
    if parallel:
        device = parallel.device
        if batch_size < parallel.world:
            raise ValueError(f"batch_size {batch_size} is smaller than the {parallel.world} processes")
        if c.lora and c.strategy == "fsdp":
            raise ValueError("strategy=fsdp with lora is not supported (an adapter's base is shared with the frozen "
                             "PRT base); a LoRA run fits one device per process: use strategy=ddp")
    torch.manual_seed(seed)
    rows = read_pairs(data)
    dtype = "float32" if c.mixed_precision == "bf16" else c.dtype  # the float32 master weights
    run = prepare_models(method, base, lora=c.lora, lora_r=c.lora_r, lora_alpha=c.lora_alpha,
                         lora_dropout=c.lora_dropout, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                         frozen_base=False)
    model, tokenizer = run.model, run.tokenizer
    if c.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers 5.2x's name; the old one
        if enable is not None:                                             # is deprecated there, gone in v6
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if c.lora:
            model.enable_input_require_grads()
    chat = uses_chat_template(tokenizer, c.chat_template)
    examples = [encode_pair(tokenizer, r["prompt"], r["response"], max_length, chat) for r in rows]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    vocab = len(tokenizer)  # the reward's distribution over the tokenizer's ids, as at inference
    start = time.perf_counter()
    frozen = None
    if method == "prt" and parallel and not c.lora:
        # several processes: a frozen copy of the base beside the reward, run on each process's rows
        frozen = parallel.wrap(load_frozen(base, dtype=dtype, device=device, trust_remote_code=trust_remote_code),
                               c.mixed_precision, trained=False)
    elif method == "prt":
        frozen = base_pass_for(run, base, examples, vocab, lora=c.lora, dtype=dtype, device=device,
                               trust_remote_code=trust_remote_code, cache=base_cache, budget_mb=base_cache_mb,
                               progress=progress)
    base_pass_s = time.perf_counter() - start
    if parallel:
        model = parallel.wrap(model, c.mixed_precision)

    steps_per_epoch = math.ceil(math.ceil(len(examples) / batch_size) / grad_accum)
    total_steps = max_steps or max(1, math.ceil(c.epochs * steps_per_epoch))
    optimizer, scheduler = make_optimizer(model, lr, c.weight_decay, total_steps, c.warmup, c.schedule)
    generator = torch.Generator().manual_seed(seed)

    def endless_batches():
        while True:
            yield from batches(examples, batch_size, pad_id, generator)

    stream = endless_batches()
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(total_steps), desc=f"train {method}", disable=not progress or bool(parallel and parallel.rank))
    for _ in bar:
        step_loss = 0.0
        for _ in range(grad_accum):
            batch = next(stream)
            if parallel:  # this process's rows; the loss weighs them by their share of the batch's tokens
                # every process draws the whole batch, so its token count is the sum over the shards
                tokens = float((batch["labels"][:, 1:] != IGNORE).sum())
                share = parallel.shard(batch)
                mine = float((share["labels"][:, 1:] != IGNORE).sum())
                # a process left without rows (an epoch's short last batch) runs the whole batch at weight 0,
                # so that every process takes part in the gradient's reduction
                batch, scale = (share, mine * parallel.world / tokens) if mine and tokens else (batch, 0.0)
            batch = {k: v.to(device) if k != "index" else v for k, v in batch.items()}
            with autocast(device, c.mixed_precision):
                loss = training_loss(method, model, frozen, batch, lam=lam, alpha=alpha, vocab=vocab) / grad_accum
            if parallel:  # gradients are averaged over the processes: the global batch's token mean
                loss = loss * scale
            step_loss += loss.item()
            loss.backward()
        if parallel:  # the step's loss over the whole batch, summed once per step
            step_loss = parallel.total(step_loss) / parallel.world
        if not math.isfinite(step_loss):  # NaN weights would follow; save nothing
            raise FloatingPointError(f"training loss is {step_loss} at step {len(losses) + 1} of {total_steps} "
                                     f"({method} on {base}); no checkpoint written")
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], c.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
        bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    wall_s = time.perf_counter() - start

    state = parallel.full_state_dict(model) if parallel else None
    # what this process held while training (under fsdp its shard: about 1/world of the weights)
    rank0_parameters = sum(getattr(p, "to_local", lambda p=p: p)().numel() for p in model.parameters())
    if parallel and parallel.rank != 0:  # rank 0 writes the checkpoint
        parallel.close()
        return out
    final, out = out, staging_dir(out)  # complete or absent, never half written
    out.mkdir(parents=True)
    model.eval()
    unwrap(model).save_pretrained(out, safe_serialization=True, **({"state_dict": state} if parallel else {}))
    tokenizer.save_pretrained(out)
    window = max(1, len(losses) // 10)
    write_manifest(
        out,
        kind="lm",
        method=method,
        trained="reward" if method == "prt" else "model",
        format="peft-lora" if c.lora else "full",
        base=model_identity(base, model),
        data={"path": str(Path(data).resolve()), "sha256": file_hash(data), "rows": len(rows)},
        hyperparameters={"alpha": alpha, **c.to_dict(), "chat_template": chat, "steps": total_steps},
        seed=seed,
        device=device,
        initial_loss=sum(losses[:window]) / window,
        final_loss=sum(losses[-window:]) / window,
        losses=losses,
        wall_s=wall_s,
        **({"base_pass": {"source": frozen.source, "size_mb": round(frozen.size_mb, 3), "wall_s": base_pass_s}}
           if method == "prt" and not isinstance(frozen, torch.nn.Module) else {}),
        **({"parallel": {"strategy": c.strategy, "processes": parallel.world, "rank0_parameters": rank0_parameters,
                         "parameters": sum(t.numel() for t in state.values())}} if parallel else {}),
    )
    published = publish_dir(out, final)  # replaces an empty folder (checked above)
    if parallel:
        parallel.close()
    return published


def mean_loss(method: str, model, base, data: str | Path, tokenizer, *, lam: float = 1.0, max_length: int = 512,
              batch_size: int = 8, chat_template: bool | None = None) -> float:
    """Mean training loss (alpha = 0) of a model over a prompt/response file, without updates."""
    import torch

    chat = uses_chat_template(tokenizer, chat_template)
    examples = [encode_pair(tokenizer, r["prompt"], r["response"], max_length, chat) for r in read_pairs(data)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    vocab = len(tokenizer)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in pad_batch(examples[start:start + batch_size], pad_id).items()}
            n = int((batch["labels"][:, 1:] != IGNORE).sum())
            total += training_loss(method, model, base, batch, lam=lam, vocab=vocab).item() * n
            count += n
    return total / max(count, 1)


def train_in_processes(processes: int, method: str, base: str | Path, data: str | Path, out: str | Path, *,
                       alpha: float, seed: int, options: dict[str, Any]) -> Path:
    """``train_lm`` in ``processes`` processes started by torchrun on this machine (one GPU each
    when there are GPUs -- the ones ``CUDA_VISIBLE_DEVICES`` shows -- else gloo between CPU
    processes); what they print goes to this process's stdout/stderr.  The suite's training cells
    run this way with ``prt-bench run --train-processes N``."""
    import shutil
    import subprocess
    import sys
    import tempfile

    from prt_bench.io import atomic_write_json

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        raise FileNotFoundError("torchrun is not installed beside this Python (it comes with torch)")
    with tempfile.TemporaryDirectory(prefix="prt-bench-train-") as tmp:
        spec = Path(tmp) / "job.json"
        atomic_write_json(spec, {"method": method, "base": str(base), "data": str(data), "out": str(out),
                                 "alpha": alpha, "seed": seed, "options": options})
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        streams = {}
        for name in ("stdout", "stderr"):  # a cell's log (redirected streams); else inherited
            try:
                getattr(sys, name).flush()
                streams[name] = getattr(sys, name).fileno() and getattr(sys, name)
            except (AttributeError, OSError, ValueError):
                pass
        proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", str(processes), "-m", "prt_bench.lm.train",
                               str(spec)], env=env, **streams)
    if proc.returncode != 0:
        raise RuntimeError(f"training in {processes} processes failed (torchrun exit {proc.returncode}; "
                           f"each process's error is above in this log)")
    return Path(out)


def _main(argv: list[str]) -> int:
    """``torchrun ... -m prt_bench.lm.train JOB.json``: one process of ``train_in_processes``."""
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    train_lm(spec["method"], spec["base"], spec["data"], spec["out"], alpha=spec["alpha"], seed=spec["seed"],
             progress=False, **spec["options"])
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
