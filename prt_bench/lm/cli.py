"""Commands of the language area: `train lm`, `profile lm`, `lm-eval` (light imports only)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated


def _train_lm(**values) -> None:
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from prt_bench.lm.train import train_lm as run

    typer.echo(str(run(**values)))


def _train_lm_command():
    """`prt-bench train lm`: its hyperparameter options are the fields of ``LMTrainConfig``."""
    from prt_bench.lm.train import LMTrainConfig
    from prt_bench.recipe import cli_command, option

    head = [option("method", str, ..., help="ft: fine-tune the base; prt: train a portable reward on it."),
            option("base", str, ..., help="Base model: hub id or local folder."),
            option("data", Path, ..., help="JSONL with 'prompt' and 'response' fields.", exists=True, dir_okay=False),
            option("out", Path, ..., help="Output folder (checkpoint + tokenizer + prt_manifest.json)."),
            option("alpha", float, 0.0, help="Entropy weight of eq. 12 (PRT)."),
            option("seed", int, 0)]
    tail = [option("trust_remote_code", bool, False, "--trust-remote-code"),
            option("device", Optional[str], None, help="cpu / cuda (default: cuda when available).")]
    return cli_command(LMTrainConfig, head, tail, _train_lm,
                       "Fine-tune a language model (ft) or train a portable reward for it (prt).")


train_lm = _train_lm_command()


def profile_lm(
    out: Annotated[Optional[Path], typer.Option(help="Write the profile JSON here.")] = None,
    base: Annotated[Optional[str], typer.Option(help="Base model folder/id (default: built ~10M Llamas).")] = None,
    reward: Annotated[Optional[str], typer.Option(help="Reward model (default: same architecture as base).")] = None,
    ft: Annotated[Optional[str], typer.Option(help="EFT's fine-tuned model (default: as base).")] = None,
    pt: Annotated[Optional[str], typer.Option(help="EFT's pretrained model (default: as base).")] = None,
    trainee: Annotated[Optional[str], typer.Option(help="Model whose FT/PRT train steps are timed (default: base).")] = None,
    targets: Annotated[str, typer.Option(help="Further bases decoded with the same reward/ft/pt, comma-separated."
                                         )] = "",
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

    record = run(base, reward, ft, pt, trainee=trainee, targets=tuple(t for t in targets.split(",") if t),
                 batch_sizes=tuple(int(b) for b in batch_sizes.split(",")),
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

    # lm-eval parses sys.argv itself; hand it what followed `prt-bench lm-eval`, with a model name
    sys.argv = ["lm-eval", *named_model_args(list(ctx.args))]
    cli_evaluate()


def named_model_args(argv: list[str]) -> list[str]:
    """lm-eval names its output folder after ``pretrained=``/``model=`` in model_args, which the
    combined models do not have (every run went to one randomly named folder): give ``prt``/``eft``
    runs ``model=prt__<base>__<reward>`` (``eft__<base>__<ft>``), from the folders' or hub ids'
    last parts, unless model_args names one."""
    def value(flag: str) -> tuple[int, str] | None:
        for i, a in enumerate(argv):
            if a == flag and i + 1 < len(argv):
                return i + 1, argv[i + 1]
            if a.startswith(flag + "="):
                return i, a[len(flag) + 1:]
        return None

    model, margs = value("--model"), value("--model_args")
    if not model or model[1] not in ("prt", "eft") or not margs or margs[1].lstrip().startswith("{"):
        return argv
    pairs = dict(p.split("=", 1) for p in margs[1].split(",") if "=" in p)
    if "model" in pairs:
        return argv
    second = pairs.get("reward" if model[1] == "prt" else "ft", "")
    parts = [model[1], *(Path(x.rstrip("/")).name for x in (pairs.get("base", ""), *second.split(";")) if x)]
    named = f"{margs[1]},model={'__'.join(parts)}"
    i = margs[0]
    argv = list(argv)
    argv[i] = named if argv[i] == margs[1] else f"--model_args={named}"
    return argv


def diagnose_lm(
    suite: Annotated[str, typer.Option(help="The language suite whose finished run is diagnosed.")] = "mini",
    results: Annotated[Path, typer.Option(help="Results root of the run (DIR/<suite>/cells/).")
                       ] = Path("results/local"),
    runs: Annotated[Path, typer.Option(help="Its checkpoints (DIR/<suite>/<cell_id>/).")] = Path("runs"),
    cache: Annotated[Optional[Path], typer.Option(help="Cache of the mini world (default: .cache/).")] = None,
    task: Annotated[Optional[str], typer.Option(help="The suite's task (default: its first).")] = None,
    n_train: Annotated[int, typer.Option(help="Fine-tuning examples the distances are measured on.")] = 200,
    out: Annotated[Optional[Path], typer.Option(help="Write the page here (and its JSON beside it, .json); "
                                                     "default: print the page.")] = None,
) -> None:
    """Why a transfer wins or loses: per-group scores, what each base knows alone, how far FT/PRT/EFT
    move each target, and the margins where PRT first leaves the gold answer (docs/mini-lm.md)."""
    import json

    from prt_bench.io import atomic_write_text
    from prt_bench.lm.diagnose import diagnose, load_run, markdown
    from prt_bench.suite.modalities import cache_dir

    found = diagnose(load_run(suite, results, runs, cache_dir(cache), task), n_train=n_train)
    page = markdown(found)
    if out is None:
        typer.echo(page)
        return
    atomic_write_text(out, page)
    atomic_write_text(out.with_suffix(".json"), json.dumps(found, indent=1, ensure_ascii=False) + "\n")
    typer.echo(f"{out} (+ {out.with_suffix('.json').name})")
