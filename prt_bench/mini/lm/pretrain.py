"""Pretraining of one mini base: a plain nanoGPT-style loop over the packed corpus.

The model is an ordinary Hugging Face causal LM built from a config (LlamaForCausalLM,
Qwen2ForCausalLM, ...), saved with save_pretrained (safetensors) next to the shared tokenizer.
"""

from __future__ import annotations

import time
from pathlib import Path

from prt_bench.schedule import warmup_cosine


def pack(docs: list[str], tokenizer):
    """All documents as one token stream, each ended by eos (the tokenizer adds no bos)."""
    import torch

    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def grow(small, config):
    """`small` deepened to `config.num_hidden_layers` by block expansion (LLaMA Pro, Wu et al.
    2024): each of its top blocks is followed by a copy whose output projections (attention
    o_proj, MLP down_proj) are zero, so the deeper model starts out computing exactly what
    `small` computes, and further training uses the new blocks."""
    from transformers import AutoModelForCausalLM

    old, new = small.config.num_hidden_layers, config.num_hidden_layers
    if new > 2 * old:
        raise ValueError(f"block expansion adds at most one copy per block: {old} -> {new} layers")
    plan = []  # (old block, is a copy) for each new block
    for i in range(old):
        plan.append((i, False))
        if i >= 2 * old - new:
            plan.append((i, True))
    state = small.state_dict()
    grown = {k: v for k, v in state.items() if ".layers." not in k}
    for j, (i, copy) in enumerate(plan):
        src, dst = f"model.layers.{i}.", f"model.layers.{j}."
        for k, v in state.items():
            if k.startswith(src):
                v = v.clone()
                if copy and k.endswith(("o_proj.weight", "down_proj.weight")):
                    v.zero_()
                grown[dst + k[len(src):]] = v
    big = AutoModelForCausalLM.from_config(config)
    big.load_state_dict(grown, strict=True)
    return big


def pretrain(out: Path, *, family: str, arch: dict, tokens, tokenizer, steps: int, batch_size: int,
             block_size: int, lr: float, warmup: int, seed: int, desc: str = "pretrain", progress: bool = True,
             init: str | Path | None = None) -> dict:
    """Train a fresh `family` model of shape `arch` (or, with `init`, go on training that
    checkpoint) for `steps` steps on random windows of `tokens`."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM

    from prt_bench.lm.tiny import tiny_config

    ids = tokenizer.convert_tokens_to_ids
    config = tiny_config(family, vocab_size=len(tokenizer), max_positions=max(512, block_size),
                         pad_token_id=ids("<|pad|>"), bos_token_id=ids("<|bos|>"),
                         eos_token_id=ids("<|endoftext|>"), **arch)
    torch.manual_seed(seed)
    if init is not None:
        model = AutoModelForCausalLM.from_pretrained(init)
        if model.config.model_type != config.model_type or model.config.hidden_size != config.hidden_size:
            raise ValueError(f"{init} is a {model.config.model_type} of width {model.config.hidden_size}, "
                             f"not the {family} of width {config.hidden_size} asked for")
        if model.config.num_hidden_layers < config.num_hidden_layers:
            model = grow(model, config)
    else:
        model = AutoModelForCausalLM.from_config(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(seed)
    n = len(tokens) - block_size - 1
    t0, cpu0 = time.time(), time.process_time()
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    loss_ema = None
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = warmup_cosine(step, steps, warmup, peak=lr, floor=0.1)  # down to lr/10
        starts = torch.randint(0, n, (batch_size,), generator=gen)
        x = torch.stack([tokens[s: s + block_size] for s in starts.tolist()])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss_ema:.3f}")
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {"final_loss": loss_ema, "params": sum(p.numel() for p in model.parameters()),
            "wall_s": round(time.time() - t0, 2), "cpu_s": round(time.process_time() - cpu0, 2),
            "tokens_seen": steps * batch_size * block_size}
