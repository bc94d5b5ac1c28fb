"""Pretraining of one mini base: a plain nanoGPT-style loop over the packed corpus.

The model is an ordinary Hugging Face causal LM built from a config (LlamaForCausalLM,
Qwen2ForCausalLM, ...), saved with save_pretrained (safetensors) next to the shared tokenizer.
"""

from __future__ import annotations

import math
import time
from pathlib import Path


def pack(docs: list[str], tokenizer):
    """All documents as one token stream, each ended by eos (the tokenizer adds no bos)."""
    import torch

    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine down to lr/10."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def pretrain(out: Path, *, family: str, arch: dict, tokens, tokenizer, steps: int, batch_size: int,
             block_size: int, lr: float, warmup: int, seed: int, desc: str = "pretrain", progress: bool = True) -> dict:
    """Train a fresh `family` model of shape `arch` for `steps` steps on random windows of `tokens`."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM

    from prt_bench.lm.tiny import tiny_config

    ids = tokenizer.convert_tokens_to_ids
    config = tiny_config(family, vocab_size=len(tokenizer), max_positions=max(512, block_size),
                         pad_token_id=ids("<|pad|>"), bos_token_id=ids("<|bos|>"),
                         eos_token_id=ids("<|endoftext|>"), **arch)
    torch.manual_seed(seed)
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
            g["lr"] = lr_at(step, steps, lr, warmup)
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
