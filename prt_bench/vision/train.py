"""Training recipes for image classifiers: FT and PRT, read top to bottom.

Both tune an image tower under the base's frozen zero-shot head (task vectors' recipe: AdamW,
cosine schedule with linear warm-up, gradient clipping; the paper: lr 1e-5, batch 128, 2000
steps, 500 warm-up).

- ``ft``:  the base's own tower, cross-entropy on ``f(x; θ)``.
- ``prt``: a reward tower initialised from the base, scored through the *training base's*
  head; the base is frozen and ``prt.prt_loss`` combines them (eq. 6, eq. 12 with alpha).
  Images are not randomly augmented, so the base's logits of each training image never
  change: they are computed the first time the image is seen and cached, and a PRT step
  then costs what an FT step costs (``cache_base=False`` recomputes them every step).

The trained tower is saved inside a full open_clip model (text tower and logit scale of the
base) in open_clip's hub layout: the checkpoint is its own classifier -- for PRT the reward
``r(x; θ)`` -- and ``bases.load_base(out)`` or ``open_clip.create_model("local-dir:" + out)``
loads it.
"""

from __future__ import annotations

import copy
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F

from prt_bench import prt
from prt_bench.io import atomic_write_json, config_hash
from prt_bench.meter import PeakMemory, sync
from prt_bench.recipe import RecipeConfig
from prt_bench.schedule import warmup_cosine
from prt_bench.vision import bases, heads, transforms
from prt_bench.vision.datasets import ImageClassification, get_dataset

METHODS = ("ft", "prt")


def batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless shuffled index batches, a fresh permutation every epoch."""
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            yield order[start:start + batch_size]


class BaseLogitsCache:
    """The frozen base's logits of each training image, filled on first sight."""

    def __init__(self, n: int, classes: int, device):
        self.logits = torch.zeros(n, classes, device=device)
        self.known = torch.zeros(n, dtype=torch.bool, device=device)

    def get(self, index: torch.Tensor, compute) -> torch.Tensor:
        missing = ~self.known[index]
        if missing.any():
            self.logits[index[missing]] = compute(missing)
            self.known[index[missing]] = True
        return self.logits[index]


def train_step(classifier, optimizer, params, x, labels, grad_clip: float, base_logits=None, *,
               lam: float = 1.0, alpha: float = 0.0) -> float:
    """One optimiser step: FT's cross-entropy, or with the frozen base's logits PRT's loss (eq. 6/12)."""
    logits = classifier(x)
    if base_logits is None:
        loss = F.cross_entropy(logits, labels)
    else:
        loss = prt.prt_loss(base_logits, logits, labels, lam=lam, alpha=alpha)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return loss.detach().item()


@dataclass(frozen=True)
class VisionTrainConfig(RecipeConfig):
    """The recipe's hyperparameters: its keywords, a suite's `train:` keys, the CLI's options and
    the manifest's record (``alpha`` and ``seed`` are the suite's own axes, passed apart)."""

    lam: float = field(default=1.0, metadata={"help": "λ of eq. 6: v = log π_base + r / λ (PRT)."})
    steps: int = field(default=2000, metadata={"help": "Optimizer steps (the paper: 2000)."})
    lr: float = field(default=1e-5, metadata={"help": "Peak learning rate, AdamW (the paper: 1e-5)."})
    batch_size: int = field(default=128, metadata={"help": "Images per step (the paper: 128)."})
    warmup: Optional[int] = field(default=None, metadata={"help": "Warm-up steps (default: a quarter of --steps)."})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay."})
    grad_clip: float = field(default=1.0, metadata={"help": "Gradient-norm clip."})
    cache_base: bool = field(default=True, metadata={"help": "Cache the frozen base's logits per image (PRT).",
                                                     "flag": "--cache-base/--no-cache-base"})


def train_vision(
    method: str,
    base: str | os.PathLike,
    dataset: str | ImageClassification,
    out: str | os.PathLike,
    *,
    alpha: float = 0.0,
    seed: int = 0,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    device: str | None = None,
    progress: bool = True,
    config: VisionTrainConfig | None = None,
    **options: Any,
) -> Path:
    """Train an FT model or a PRT reward on ``dataset`` from ``base``; returns the checkpoint folder.
    The hyperparameters are ``config``'s or ``options`` (keywords of ``VisionTrainConfig``)."""
    c = config or VisionTrainConfig.from_options(options)
    lam, steps, lr, batch_size, weight_decay, grad_clip, cache_base = (c.lam, c.steps, c.lr, c.batch_size,
                                                                       c.weight_decay, c.grad_clip, c.cache_base)
    warmup = c.warmup
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be positive")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    warmup = round(steps / 4) if warmup is None else warmup  # the paper: 500 of 2000
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    data = get_dataset(dataset, split, data_dir) if isinstance(dataset, str) else dataset
    if len(data) == 0:
        raise ValueError(f"dataset {data.name} split {split} is empty")

    loaded = bases.load_base(base, device=device)
    head = heads.zero_shot_head(loaded.model, loaded.tokenizer, data.classnames, data.templates, device=device)
    if method == "ft":
        model = loaded.model
        frozen_base = None
    else:
        model = copy.deepcopy(loaded.model)  # r(x; θ) starts at the base's weights
        frozen_base = heads.ZeroShotClassifier(loaded.model.visual, head, loaded.model.logit_scale).eval()
        frozen_base.requires_grad_(False)
    model.requires_grad_(False)
    classifier = heads.ZeroShotClassifier(model.visual, head, model.logit_scale)
    classifier.tower.requires_grad_(True)
    classifier.train()

    params = [p for p in classifier.tower.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, steps, warmup))
    cache = BaseLogitsCache(len(data), len(data.classnames), device) if frozen_base is not None and cache_base else None

    generator = torch.Generator().manual_seed(seed)
    stream = _stream(data, batches(len(data), batch_size, generator), num_workers)
    losses, step_times = [], []
    bar = _progress(steps, f"{method} on {data.name}", progress)
    with PeakMemory(device) as memory:
        for step in range(steps):
            images, labels, index = next(stream)
            sync(device)
            start = time.perf_counter()
            x = transforms.prepare(transforms.to_device(images, device), loaded.preprocess_cfg)
            labels = labels.to(device)
            base_out = None
            if frozen_base is not None:
                def base_logits(mask=None):
                    with torch.no_grad():
                        return frozen_base(x if mask is None else x[mask.to(x.device)])
                base_out = cache.get(index.to(device), base_logits) if cache is not None else base_logits()
            loss = train_step(classifier, optimizer, params, x, labels, grad_clip, base_out, lam=lam, alpha=alpha)
            if not math.isfinite(loss):  # the step already applied NaN updates; save nothing
                raise FloatingPointError(f"training loss is {loss} at step {step + 1} of {steps} ({method} on {base}); "
                                         "no checkpoint written")
            schedule.step()
            sync(device)
            step_times.append(time.perf_counter() - start)
            losses.append(loss)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
    if bar is not None:
        bar.close()

    config = {
        "method": method, "base": str(base), "dataset": data.name, "split": data.split, "n_train": len(data),
        "alpha": alpha, **c.to_dict(), "warmup": warmup, "seed": seed, "augmentation": None,
    }
    timings = {"wall_s": time.perf_counter() - t0, "step_s_median": statistics.median(step_times),
               "peak_mem_mb": memory.growth_mb, "device": str(device)}
    out = Path(out)
    bases.save_base(
        model, out, loaded.model_cfg, loaded.preprocess_cfg,
        kind="vision-reward" if method == "prt" else "vision-ft",
        config=config, config_hash=config_hash(config),
        classnames=data.classnames, templates=data.templates,
        base_manifest=loaded.manifest, final_loss=losses[-1], timings=timings,
    )
    atomic_write_json(out / "train_log.json", {"loss": losses, "step_s": step_times})
    return out


class _Endless:
    """A batch sampler over the seeded index batches (drawn in the main process: workers change nothing)."""

    def __init__(self, order):
        self.order = order

    def __iter__(self):
        return (index.tolist() for index in self.order)


def _stream(data: ImageClassification, order, num_workers: int):
    """``(images, labels, index)`` batches: sliced when the images are in memory, else decoded by a DataLoader."""
    if isinstance(data.images, torch.Tensor):
        return ((data.images[index], data.labels[index], index) for index in order)
    loader = torch.utils.data.DataLoader(data, batch_sampler=_Endless(order), num_workers=num_workers,
                                         collate_fn=transforms.collate, persistent_workers=num_workers > 0)
    return iter(loader)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)
