"""Commands of the language area: `train lm`, `profile lm`, `lm-eval` (light imports only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated


def train_lm(
    method: Annotated[str, typer.Option(help="ft: fine-tune the base; prt: train a portable reward on it.")],
    base: Annotated[str, typer.Option(help="Base model: hub id or local folder.")],
    data: Annotated[Path, typer.Option(help="JSONL with 'prompt' and 'response' fields.", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option(help="Output folder (checkpoint + tokenizer + prt_manifest.json).")],
    alpha: Annotated[float, typer.Option(help="Entropy weight of eq. 12 (PRT).")] = 0.0,
    lam: Annotated[float, typer.Option(help="λ of eq. 6: v = log π_base + r / λ (PRT).")] = 1.0,
    lora: Annotated[bool, typer.Option("--lora", help="Train a peft LoRA adapter instead of all weights.")] = False,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    seed: Annotated[int, typer.Option()] = 0,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 2e-5,
    epochs: Annotated[float, typer.Option()] = 1.0,
    max_steps: Annotated[Optional[int], typer.Option(help="Optimizer steps; overrides --epochs.")] = None,
    batch_size: Annotated[int, typer.Option()] = 8,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    max_length: Annotated[int, typer.Option(help="Tokens per example (prompt cut first).")] = 512,
    warmup: Annotated[float, typer.Option(help="Warm-up: fraction of steps (<1) or step count.")] = 0.03,
    schedule: Annotated[str, typer.Option(help="cosine | linear | constant_with_warmup.")] = "cosine",
    chat_template: Annotated[Optional[bool], typer.Option(
        "--chat-template/--plain", help="Force the tokenizer's chat template or the plain format "
        "(default: the template when the tokenizer has one).")] = None,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code")] = False,
    device: Annotated[Optional[str], typer.Option(help="cpu / cuda (default: cuda when available).")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="float32 / bfloat16 / float16 (default: checkpoint's).")] = None,
) -> None:
    """Fine-tune a language model (ft) or train a portable reward for it (prt)."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from prt_bench.lm.train import train_lm as run

    path = run(method, base, data, out, alpha=alpha, lam=lam, lora=lora, lora_r=lora_r, lora_alpha=2 * lora_r,
               seed=seed, lr=lr, epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum,
               max_length=max_length, warmup=warmup, schedule=schedule, chat_template=chat_template,
               trust_remote_code=trust_remote_code, device=device, dtype=dtype)
    typer.echo(str(path))


def profile_lm(
    out: Annotated[Optional[Path], typer.Option(help="Write the profile JSON here.")] = None,
    base: Annotated[Optional[str], typer.Option(help="Base model folder/id (default: built ~10M Llamas).")] = None,
    reward: Annotated[Optional[str], typer.Option(help="Reward model (default: same architecture as base).")] = None,
    ft: Annotated[Optional[str], typer.Option(help="EFT's fine-tuned model (default: as base).")] = None,
    pt: Annotated[Optional[str], typer.Option(help="EFT's pretrained model (default: as base).")] = None,
    trainee: Annotated[Optional[str], typer.Option(help="Model whose FT/PRT train steps are timed (default: base).")] = None,
    batch_sizes: Annotated[str, typer.Option(help="Decode batch sizes, comma-separated.")] = "1,16",
    prompt_len: Annotated[int, typer.Option()] = 32,
    new_tokens: Annotated[int, typer.Option(help="Tokens decoded per timed run.")] = 32,
    train_batch: Annotated[int, typer.Option()] = 8,
    train_seq_len: Annotated[int, typer.Option()] = 128,
    repeats: Annotated[int, typer.Option(help="Timed repeats (the median is reported).")] = 5,
    hidden: Annotated[int, typer.Option(help="Hidden size of the built models.")] = 256,
    layers: Annotated[int, typer.Option(help="Layers of the built models.")] = 10,
    device: Annotated[Optional[str], typer.Option()] = None,
    dtype: Annotated[Optional[str], typer.Option()] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch threads per measurement (default: torch's).")] = None,
) -> None:
    """Decode time/memory of base, reward, PRT, EFT and train-step time/memory of FT vs PRT, side by side."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from prt_bench.io import atomic_write_json
    from prt_bench.lm.profile import DEFAULT_SIZE, print_profile, profile_lm as run

    record = run(base, reward, ft, pt, trainee=trainee, batch_sizes=tuple(int(b) for b in batch_sizes.split(",")),
                 prompt_len=prompt_len, new_tokens=new_tokens, train_batch=train_batch, train_seq_len=train_seq_len,
                 repeats=repeats, device=device, dtype=dtype, threads=threads,
                 size={**DEFAULT_SIZE, "hidden": hidden, "layers": layers})
    print_profile(record)
    if out:
        atomic_write_json(out, record)
        typer.echo(f"wrote {out}")


def lm_eval(ctx: typer.Context) -> None:
    """Run lm-eval's own CLI (every flag of it) with the `prt` and `eft` models registered."""
    import sys

    import prt_bench  # noqa: F401  (registers `prt` and `eft`)
    from lm_eval.__main__ import cli_evaluate

    # lm-eval parses sys.argv itself; hand it exactly what followed `prt-bench lm-eval`.
    sys.argv = ["lm-eval", *ctx.args]
    cli_evaluate()
