"""Commands of the vision area: `train vision`, `eval vision`, `profile vision` (light imports only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

BASE_HELP = "MODEL:TAG (e.g. ViT-B-16:laion400m_e32), MODEL:FILE.safetensors, or a folder with open_clip_config.json."


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


def _train_vision(workers: int = 0, **values) -> None:
    from prt_bench.vision.train import train_vision as run

    try:
        path = run(num_workers=workers, **values)
    except (ValueError, KeyError, FileNotFoundError, TypeError) as e:
        _fail(e)
    typer.echo(str(path))


def _train_vision_command():
    """`prt-bench train vision`: its hyperparameter options are the fields of ``VisionTrainConfig``."""
    from prt_bench.recipe import cli_command, option
    from prt_bench.vision.train import VisionTrainConfig

    head = [option("method", str, ..., help="ft: fine-tune the image tower; prt: train a portable reward."),
            option("base", str, ..., help=BASE_HELP),
            option("dataset", str, ..., help="Registry name (fashion_mnist, cars, ...) or an image folder."),
            option("out", Path, ..., help="Output folder (open_clip layout + prt_manifest.json)."),
            option("alpha", float, 0.0, help="Entropy weight of eq. 12 (PRT)."),
            option("seed", int, 0)]
    tail = [option("split", str, "train", help="Training split; slices allowed: train[:5000]."),
            option("data_dir", Optional[Path], None, help="Data dir (default: $PRT_BENCH_DATA or ../shared/data)."),
            option("workers", int, 0, help="DataLoader workers decoding images from disk."),
            option("device", Optional[str], None, help="cpu / cuda (default: cuda when available).")]
    return cli_command(VisionTrainConfig, head, tail, _train_vision,
                       "Fine-tune an open_clip image classifier (ft) or train a portable reward for it (prt).")


train_vision = _train_vision_command()


def eval_vision(
    method: Annotated[str, typer.Option(help="zeroshot | ft | prt | eft | reward (softmax(r) alone).")],
    dataset: Annotated[str, typer.Option(help="Registry name or an image folder.")],
    target: Annotated[Optional[str], typer.Option(help="The base to evaluate or to steer. " + BASE_HELP)] = None,
    reward: Annotated[Optional[str], typer.Option(help="PRT reward folder (prt, reward).")] = None,
    ft: Annotated[Optional[str], typer.Option(help="FT model folder (ft, eft).")] = None,
    pt: Annotated[Optional[str], typer.Option(help="The base the FT model was tuned from (eft).")] = None,
    lam: Annotated[Optional[float], typer.Option(help="λ of eq. 10 (default: the λ the reward was trained "
                                                 "with, from its manifest, else 1).")] = None,
    split: Annotated[str, typer.Option(help="Evaluation split; slices allowed: test[:1000].")] = "test",
    batch_size: Annotated[int, typer.Option()] = 128,
    workers: Annotated[int, typer.Option(help="DataLoader workers decoding images from disk.")] = 0,
    data_dir: Annotated[Optional[Path], typer.Option(help="Data dir (default: $PRT_BENCH_DATA or ../shared/data).")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu / cuda (default: cuda when available).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the result JSON here.")] = None,
) -> None:
    """Evaluate zero-shot, FT, PRT, EFT or reward-only accuracy (acc1, acc5, mean per-class recall)."""
    from prt_bench.vision.eval import eval_vision as run

    try:
        result = run(method, target, dataset, reward=reward, ft=ft, pt=pt, lam=lam, split=split, data_dir=data_dir,
                     batch_size=batch_size, num_workers=workers, device=device, out=out)
    except (ValueError, KeyError, FileNotFoundError) as e:
        _fail(e)
    shown = {k: result[k] for k in ("acc1", "acc5", "mean_per_class_recall", "nll", "n")}
    typer.echo(json.dumps({**shown, "method": method, "dataset": result["config"]["dataset"]}))


def profile_vision(
    model: Annotated[str, typer.Option(help="Reward / FT architecture: an open_clip name (random weights) or a base spec.")] = "prt-small-vit",
    target: Annotated[Optional[str], typer.Option(help="PRT / EFT target (default: --model).")] = None,
    targets: Annotated[str, typer.Option(help="Further targets of the same reward, comma-separated.")] = "",
    train_batch: Annotated[int, typer.Option()] = 128,
    infer_batch: Annotated[int, typer.Option()] = 128,
    steps: Annotated[int, typer.Option(help="Measured steps per method (median reported).")] = 10,
    warmup: Annotated[int, typer.Option(help="Unmeasured steps first.")] = 3,
    device: Annotated[Optional[str], typer.Option(help="cpu / cuda (default: cuda when available).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the profile JSON here.")] = None,
) -> None:
    """FT vs PRT train-step time and memory; FT, PRT and EFT inference at batch 128; side by side."""
    from prt_bench.vision.profile import profile_vision as run

    try:
        run(model, target, targets=tuple(t for t in targets.split(",") if t), train_batch=train_batch,
            infer_batch=infer_batch, steps=steps, warmup=warmup, device=device, out=out)
    except (ValueError, KeyError, FileNotFoundError) as e:
        _fail(e)


def diagnose_vision(
    results: Annotated[Path, typer.Argument(help="A results folder with per-image records, e.g. results/reference/mini.")],
    out: Annotated[Optional[Path], typer.Option(help="Write the table here (Markdown; JSON beside it, .json).")] = None,
    suite: Annotated[Optional[str], typer.Option(
        help="Also load this suite's vision bases and measure their zero-shot heads: how far apart each "
             "holds the class names (cosines between class embeddings).")] = None,
    cache: Annotated[Optional[Path], typer.Option(help="Cache of the mini world (default: .cache/).")] = None,
) -> None:
    """Whose knowledge PRT's predictions carry: per swapped target, PRT against the reward alone and
    the target alone, image by image (no checkpoint needed; --suite adds the bases' zero-shot heads)."""
    import json

    from prt_bench.io import atomic_write_text
    from prt_bench.report.card import world_card
    from prt_bench.report.results import Items, load_results
    from prt_bench.report.tables import Lookup
    from prt_bench.vision.diagnose import agreement, heads, per_class

    res = load_results(results)
    lk = Lookup(res.agg, Items(res))
    rows = agreement(results)
    classes = per_class(res)
    confidence = per_class(res, "logp_true")
    card = [{"task": task, **r} for modality, task in lk.tasks() if modality == "vision" for r in world_card(lk, task)]
    try:
        spreads = heads(suite, cache) if suite else []
    except (ValueError, KeyError, FileNotFoundError) as e:
        _fail(e)
    if not rows and not card:
        raise typer.BadParameter(f"{results}: no vision PRT cell with its reward-only and base-alone cells "
                                 "(and their per-image records)")
    import pandas as pd

    from prt_bench.report.tables import to_markdown

    shown = {True: "yes", False: "**no**", None: "–"}
    page = (f"# Diagnosis of the vision cells of {results}\n\n## World card: the preconditions, measured\n\n"
            + to_markdown(pd.DataFrame([{**r, "holds": shown[r["holds"]]} for r in card]))
            + "\n\n## Whose knowledge PRT carries\n\n"
            + to_markdown(pd.DataFrame([{k: f"{v:.3f}" if isinstance(v, float) else v for k, v in r.items()}
                                        for r in rows]))
            + "\n\n## Accuracy per class (label index; main α, trained λ, mean over seeds)\n\n"
            + to_markdown(pd.DataFrame([{k: f"{v:.2f}" if isinstance(v, float) else v for k, v in r.items()}
                                        for r in classes]))
            + "\n\n## Mean log-probability of the true label per class (how confidently right or wrong)\n\n"
            + to_markdown(pd.DataFrame([{k: f"{v:.2f}" if isinstance(v, float) else v for k, v in r.items()}
                                        for r in confidence])) + "\n"
            + ("\n## Zero-shot heads: how far apart each base holds the class names (cosine; near 1: flat, "
               "and no tuning under the frozen head pulls the closest pair apart)\n\n"
               + to_markdown(pd.DataFrame([{k: f"{v:.3f}" if isinstance(v, float) else v for k, v in r.items()}
                                           for r in spreads])) + "\n" if spreads else ""))
    if out is None:
        typer.echo(page)
        return
    atomic_write_text(out, page)
    atomic_write_text(out.with_suffix(".json"),
                      json.dumps({"world card": card, "agreement": rows, "per class": classes,
                                  "per class logp_true": confidence, "heads": spreads}, indent=1) + "\n")
    typer.echo(str(out))
