"""The vision evaluator: one dataset, one method, CLIP_benchmark's metrics.

Every model involved is a zero-shot classifier ``f(x) = scale · normalize(tower(x)) @ head``
with the head built from *its own* text tower and the dataset's class names:

- ``zeroshot``: the target base.                           log softmax f_target
- ``ft``:       an FT checkpoint (``--ft``, or the target).  log softmax f_ft
- ``prt``:      target + reward (eq. 10).                   prt.prt_logprobs(f_target, r, λ)
- ``eft``:      target + FT + its pretrained base.          prt.eft_logprobs(f_target, f_ft, f_pt)
- ``reward``:   the reward alone, softmax(r)  (the paper's reward-only accuracy, Figs. 6-7)

The reward ``r(x; θ)`` is a whole classifier: its tuned tower under the head of the base it
was trained on -- and a reward checkpoint carries that base's text tower and logit scale,
so its head is rebuilt from the checkpoint itself.  The target contributes its own zero-shot
logits through its own head; target and reward may differ in architecture, pretraining data
and preprocessing (each model sees the images in its own ``preprocess_cfg``).  They must
agree on the label set: checkpoints trained on other classes are refused.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from prt_bench import methods, prt
from prt_bench.io import VISION_EVAL_SCHEMA, atomic_write_json, environment
from prt_bench.vision import bases, heads, transforms
from prt_bench.vision.datasets import ImageClassification, get_dataset
from prt_bench.meter import PeakMemory, sync

METHODS = methods.COMBINATIONS
NEEDS = methods.ROLES


def check_label_set(role: str, base: bases.Base, classnames: list[str], dataset: str) -> None:
    """Refuse a checkpoint trained on other classes than the ones being evaluated."""
    trained = (base.manifest or {}).get("classnames")
    if trained is not None and list(trained) != list(classnames):
        was = (base.manifest.get("config") or {}).get("dataset", "?")
        raise ValueError(
            f"label sets differ: the {role} {base.spec} was trained on {was} ({len(trained)} classes: "
            f"{', '.join(trained[:4])}, ...) but {dataset} has {len(classnames)} classes "
            f"({', '.join(classnames[:4])}, ...); PRT and EFT need the same labels in the same order")


def per_sample(log_probs: torch.Tensor, labels: torch.Tensor) -> list[dict[str, Any]]:
    """One row per image, in dataset order: its label, the prediction, whether the label is in
    the top 5, and the log-probability the method gives the true class."""
    k = min(5, log_probs.shape[-1])
    topk = log_probs.topk(k, dim=-1).indices
    logp_true = log_probs.gather(1, labels[:, None])[:, 0].tolist()
    hit5 = (topk == labels[:, None]).any(-1).tolist()
    return [{"i": i, "label": int(y), "pred": int(p), "top5": bool(h), "logp_true": float(lp)}
            for i, (y, p, h, lp) in enumerate(zip(labels.tolist(), topk[:, 0].tolist(), hit5, logp_true))]


def metrics(rows: list[dict[str, Any]], classes: int) -> dict[str, float]:
    """acc1, acc5 and mean per-class recall (CLIP_benchmark's fields), plus the mean NLL, from the
    per-image rows (the same arithmetic in ``eval_vision`` and in a rescore)."""
    n = len(rows)
    count, hits = [0] * classes, [0] * classes
    for r in rows:
        count[r["label"]] += 1
        hits[r["label"]] += r["pred"] == r["label"]
    recalls = [h / c for h, c in zip(hits, count) if c]
    return {
        "acc1": sum(hits) / n,
        "acc5": sum(r["top5"] for r in rows) / n,
        "mean_per_class_recall": sum(recalls) / len(recalls),
        "nll": -sum(r["logp_true"] for r in rows) / n,
    }


def item_scores(rows: list[dict[str, Any]], metric: str, classes: int) -> dict[str, float]:
    """image index -> its value of ``metric``; their mean is the metric (mean per-class recall:
    each hit weighted by n / (classes present · images of its class))."""
    if metric == "acc1":
        return {str(r["i"]): float(r["pred"] == r["label"]) for r in rows}
    if metric == "acc5":
        return {str(r["i"]): float(r["top5"]) for r in rows}
    if metric == "nll":
        return {str(r["i"]): -r["logp_true"] for r in rows}
    if metric == "mean_per_class_recall":
        count: dict[int, int] = {}
        for r in rows:
            count[r["label"]] = count.get(r["label"], 0) + 1
        w = len(rows) / len(count)
        return {str(r["i"]): float(r["pred"] == r["label"]) * w / count[r["label"]] for r in rows}
    raise KeyError(f"no per-image value of {metric!r}")


def combine(method: str, logits: dict[str, torch.Tensor], lam: float = 1.0) -> torch.Tensor:
    """Log-probabilities of ``method`` from the logits of the models it needs (all math in prt.py)."""
    if method == "zeroshot":
        return torch.log_softmax(logits["target"].float(), -1)
    if method == "ft":
        return torch.log_softmax(logits["ft"].float(), -1)
    if method == "reward":
        return torch.log_softmax(logits["reward"].float(), -1)
    if method == "prt":
        return prt.prt_logprobs(logits["target"], logits["reward"], lam)
    return prt.eft_logprobs(logits["target"], logits["ft"], logits["pt"])


def load_classifiers(method: str, specs: dict[str, Any], classnames, templates, dataset: str, device) -> dict:
    """``role -> (classifier, preprocess_cfg)`` for every model ``method`` needs."""
    models = {}
    for role in NEEDS[method]:
        if specs.get(role) is None:
            raise ValueError(f"method {method} needs --{role}")
        base = bases.load_base(specs[role], device=device)
        own_templates = templates
        if role != "target":  # a zero-shot base has no label set of its own
            check_label_set(role, base, classnames, dataset)
            # a trained model keeps the head it was trained under: its recorded prompts
            own_templates = (base.manifest or {}).get("templates") or templates
        clf = heads.classifier_for(base, classnames, own_templates, device=device).eval().requires_grad_(False)
        models[role] = (clf, base.preprocess_cfg)
    return models


def eval_vision(
    method: str,
    target: str | os.PathLike | None = None,
    dataset: str | ImageClassification = "fashion_mnist",
    *,
    reward: str | os.PathLike | None = None,
    ft: str | os.PathLike | None = None,
    pt: str | os.PathLike | None = None,
    lam: float | None = None,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 128,
    num_workers: int = 0,
    device: str | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    keep_samples: bool = False,
) -> dict[str, Any]:
    """Evaluate one method on one dataset; returns (and with ``out`` writes) the result record,
    with ``keep_samples`` also its per-image rows (``per_sample``) under ``samples``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if lam is None:  # the λ the reward was trained with (eq. 6), else 1
        from prt_bench.io import trained_lam

        lam = (trained_lam(reward) if reward is not None else None) or 1.0
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a finite number > 0, got {lam}")
    if method == "ft" and ft is None:
        ft = target
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    data = get_dataset(dataset, split, data_dir) if isinstance(dataset, str) else dataset
    specs = {"target": target, "reward": reward, "ft": ft, "pt": pt}
    models = load_classifiers(method, specs, data.classnames, data.templates, data.name, device)
    load_s = time.perf_counter() - t0

    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=transforms.collate,
                                         num_workers=num_workers)
    all_logp, all_labels, batch_times = [], [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(data), desc=f"eval {method} on {data.name}", unit="img", dynamic_ncols=True)
    with PeakMemory(device) as memory, torch.no_grad():
        for images, labels, _ in loader:
            sync(device)
            start = time.perf_counter()
            logits = forward(models, images, device)
            logp = combine(method, logits, lam)
            sync(device)
            batch_times.append(time.perf_counter() - start)
            all_logp.append(logp.cpu())
            all_labels.append(labels)
            if bar is not None:
                bar.update(len(labels))
    if bar is not None:
        bar.close()
    all_logp = torch.cat(all_logp)
    bad = int(torch.isnan(all_logp).any(-1).sum())
    if bad:  # NaN weights classify "something"; a score of them would be recorded as a result
        raise FloatingPointError(f"{method}: the combined log-probabilities are NaN for {bad} of {len(data)} images "
                                 f"of {data.name} (corrupt or diverged weights?); no result")
    rows = per_sample(all_logp, torch.cat(all_labels))
    result: dict[str, Any] = metrics(rows, len(data.classnames))
    result.update({
        "schema": VISION_EVAL_SCHEMA,
        "n": len(data),
        "config": {"method": method, "dataset": data.name, "split": data.split, "lam": lam, "batch_size": batch_size,
                   "classes": len(data.classnames), **{k: (str(v) if v is not None else None) for k, v in specs.items()}},
        "timings": {"wall_s": time.perf_counter() - t0, "load_s": load_s, "inference_s": sum(batch_times),
                    "batch_s_median": statistics.median(batch_times), "peak_mem_mb": memory.growth_mb,
                    "device": str(device)},
        "environment": environment(str(device)),
    })
    if method == "zeroshot":  # how far apart the base's own head holds the names (the world card's head row)
        result["head"] = heads.head_spread(models["target"][0].head, data.classnames)
    if out is not None:
        atomic_write_json(Path(out), result)
    if keep_samples:
        result["samples"] = rows
    return result


def forward(models: dict, images, device) -> dict[str, torch.Tensor]:
    """Each model's logits; models sharing a preprocessing share the prepared batch."""
    prepared: dict[str, torch.Tensor] = {}
    logits = {}
    for role, (clf, cfg) in models.items():
        key = repr(sorted((k, str(v)) for k, v in cfg.items()))
        if key not in prepared:
            prepared[key] = transforms.prepare(transforms.to_device(images, device), cfg)
        logits[role] = clf(prepared[key])
    return logits
