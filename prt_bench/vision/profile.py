"""What PRT costs against FT (training) and EFT (inference), measured side by side in one run.

Training (on the source, where the reward is trained): one step of FT and of PRT with the
base's logits cached (and, for reference, recomputed every step), same tower, batch and
synthetic images, and the frozen base's forward alone.  Inference at batch 128, what a user
of the target chooses between: FT of the target (one tower, the target's), PRT (target +
reward), EFT (target + FT + its base), and the reward alone.  Steps of the methods are
*interleaved*, so a busy machine slows them alike, and each ratio is the median of the ratios of
*single rounds* (one step of every method); memory is
measured per method in its own phase (models built inside it).

Every ratio comes with its physical limit, computed from the single towers measured in the
same run (T: the target's tower, S: the source's; F: an FT step, B: the frozen base's forward
on a training batch): PRT/FT(target) (T + S) / T, PRT/EFT (T + S) / (T + 2S), PRT over its
two towers 1, PRT/FT training 1 with the base's logits cached and (F + B) / F without.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from typing import Any

import torch

from prt_bench import methods
from prt_bench.io import PROFILE_SCHEMA, atomic_write_json, environment
from prt_bench.meter import PeakMemory, sync, tensor_mb
from prt_bench.vision import bases, heads
from prt_bench.vision.train import BaseLogitsCache, train_step

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
TEMPLATES = ["a photo of a {c}."]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): the CPU time stays fair on a shared machine."""
    return time.perf_counter() - start[0], time.process_time() - start[1]


_LOADED: dict[tuple[str, str], bases.Base] | None = None  # within one profile_vision: each model read once


def _load(spec: str, device) -> bases.Base:
    """A fresh copy of the model (the trainers change their weights); read from disk once per profile."""
    key = (spec, str(device))
    if _LOADED is None or key not in _LOADED:
        bases.register_configs()
        import open_clip

        if spec in open_clip.list_models():  # an architecture alone: random weights, the cost is the same
            base = bases.new_base(spec, device=device)
        else:
            base = bases.load_base(spec, device=device)
        if _LOADED is None:
            return base
        _LOADED[key] = base
    base = _LOADED[key]
    return bases.Base(copy.deepcopy(base.model), base.tokenizer, base.model_cfg, base.preprocess_cfg, base.spec,
                      base.manifest)


def _classifier(base: bases.Base, device) -> heads.ZeroShotClassifier:
    return heads.classifier_for(base, CLASSES, TEMPLATES, device=device)


class _Trainer:
    """FT or PRT training state on a fixed set of synthetic images (indices into it per step)."""

    def __init__(self, method: str, spec: str, n_images: int, batch: int, device, cache: bool = True):
        base = _load(spec, device)
        size = base.image_size
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(n_images, 3, size, size, generator=g).to(device)
        self.labels = torch.randint(0, len(CLASSES), (n_images,), generator=g).to(device)
        self.batch, self.n, self.device, self.step_i = batch, n_images, device, 0
        if method == "ft":
            model, self.frozen = base.model, None
        else:
            model = copy.deepcopy(base.model)
            self.frozen = _classifier(base, device).eval().requires_grad_(False)
        model.requires_grad_(False)
        self.clf = _classifier(bases.Base(model, base.tokenizer, base.model_cfg, base.preprocess_cfg, spec), device)
        self.clf.tower.requires_grad_(True)
        self.clf.train()
        self.params = [p for p in self.clf.tower.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=1e-5, weight_decay=0.1)
        self.cache = BaseLogitsCache(n_images, len(CLASSES), device) if self.frozen is not None and cache else None

    def step(self) -> float:
        start_i = (self.step_i * self.batch) % self.n
        self.step_i += 1
        index = torch.arange(start_i, start_i + self.batch, device=self.device) % self.n
        sync(self.device)
        t = _clock()
        x, y = self.images[index], self.labels[index]
        base_out = None
        if self.frozen is not None:
            def compute(mask=None):
                with torch.no_grad():
                    return self.frozen(x if mask is None else x[mask])
            base_out = self.cache.get(index, compute) if self.cache is not None else compute()
        train_step(self.clf, self.opt, self.params, x, y, 1.0, base_out)
        sync(self.device)
        return _since(t)


class _Inference:
    """FT (1 tower), PRT (target + reward) or EFT (target + FT + base) at inference."""

    def __init__(self, method: str, model: str, target: str, batch: int, device):
        from prt_bench.vision.eval import combine

        self.method, self.device, self.combine = method, device, combine
        # the method's roles (prt_bench.methods): the target's tower for the target, the source's for
        # the rest -- FT is measured as FT of the target (its one tower is the target's architecture)
        self.roles = ("target",) if method == "ft" else methods.ROLES[method]
        self.classifiers = [_classifier(_load(target if role == "target" else model, device), device).eval()
                            for role in self.roles]
        sizes = {c.tower.image_size if isinstance(c.tower.image_size, int) else c.tower.image_size[0]
                 for c in self.classifiers}
        g = torch.Generator().manual_seed(1)
        self.inputs = {s: torch.randn(batch, 3, s, s, generator=g).to(device) for s in sizes}

    def step(self) -> float:
        sync(self.device)
        t = _clock()
        with torch.no_grad():
            logits = [c(self.inputs[c.tower.image_size if isinstance(c.tower.image_size, int)
                                    else c.tower.image_size[0]]) for c in self.classifiers]
            self.combine(self.method, dict(zip(methods.ROLES[self.method], logits)))
        sync(self.device)
        return _since(t)


def _memory(make, warmup: int, steps: int, device) -> tuple[float, float]:
    """(MB the method holds: models, optimiser states, cache, inputs; that plus the peak its steps add)."""
    worker = make()
    for _ in range(warmup):  # optimiser states and the cache exist from here on
        worker.step()
    with PeakMemory(device) as m:
        for _ in range(steps):
            worker.step()
    held = tensor_mb(worker)
    del worker
    return held, held + m.growth_mb


def _interleaved(workers: dict[str, Any], steps: int, warmup: int) -> dict[Any, list[tuple[float, float]]]:
    """Wall and CPU seconds of each worker's steps, one step of every worker per round."""
    times: dict[Any, list[tuple[float, float]]] = {k: [] for k in workers}
    names = list(workers)
    for i in range(warmup + steps):
        for name in names[i % len(names):] + names[:i % len(names)]:  # rotate: no method always goes first
            t = workers[name].step()
            if i >= warmup:
                times[name].append(t)
    return times


def _medians(times: dict[Any, list[tuple[float, float]]], clock: int) -> dict[Any, float]:
    return {k: statistics.median(t[clock] for t in v) for k, v in times.items()}


def _paired_ratios(train: dict[str, list], infer: dict[str, list], clock: int) -> tuple[dict, dict]:
    """Each ratio and limit as the median over rounds of that round's (the workloads of a round
    ran one after another: slow drifts of a shared machine cancel)."""
    rounds = min(len(v) for v in [*train.values(), *infer.values()])
    per = [time_ratios({k: v[i][clock] for k, v in train.items()}, {k: v[i][clock] for k, v in infer.items()})
           for i in range(rounds)]
    return ({k: statistics.median(p[0][k] for p in per) for k in per[0][0]},
            {k: statistics.median(p[1][k] for p in per) for k in per[0][1]})


def profile_vision(
    model: str = "prt-small-vit",
    target: str | None = None,
    *,
    targets: tuple[str, ...] = (),
    train_batch: int = 128,
    infer_batch: int = 128,
    steps: int = 10,
    warmup: int = 3,
    device: str | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Profile FT vs PRT training and FT/PRT/EFT inference; ``model`` is the reward/FT architecture
    (an open_clip name, built with random weights, or any base spec), ``target`` the PRT/EFT target;
    ``targets`` further targets of the same reward (their rows in ``extra_rows``, every target's
    ratios in ``transfers``)."""
    global _LOADED
    _LOADED = {}
    try:
        return _profile_vision(model, target, tuple(targets), train_batch=train_batch, infer_batch=infer_batch,
                               steps=steps, warmup=warmup, device=device, out=out, progress=progress)
    finally:
        _LOADED = None


def _profile_vision(model: str, target: str | None, targets: tuple[str, ...], *, train_batch: int,
                    infer_batch: int, steps: int, warmup: int, device: str | None, out, progress: bool
                    ) -> dict[str, Any]:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    target = target or model
    n_images = 2 * train_batch  # warm-up fills the cache: two batches cycle
    warmup = max(warmup, 2)
    say = print if progress else (lambda *a, **k: None)

    all_targets = [target, *[t for t in targets if t != target]]
    # inference workloads: the reward alone once, FT (of the target), PRT and EFT per target
    infer_keys = [("reward", target)] + [(m, t) for t in all_targets for m in INFERENCE if m != "reward"]

    say("profile vision: memory, one method at a time")
    mem = {("train", m): _memory(lambda: _Trainer(m, model, n_images, train_batch, device), warmup, 2, device)
           for m in ("ft", "prt")}
    for m, t in infer_keys:
        mem[("inference", m, t)] = _memory(lambda: _Inference(m, model, t, infer_batch, device), 1, 2, device)

    say(f"profile vision: time, {steps} interleaved steps after {warmup} warm-up")
    trainers = {"ft": _Trainer("ft", model, n_images, train_batch, device),
                "prt": _Trainer("prt", model, n_images, train_batch, device),
                "prt_uncached": _Trainer("prt", model, n_images, train_batch, device, cache=False),
                "forward": _Inference("reward", model, model, train_batch, device)}  # the frozen base's pass
    train_runs = _interleaved(trainers, steps, warmup)
    del trainers
    runners = {k: _Inference(k[0], model, k[1], infer_batch, device) for k in infer_keys}
    infer_runs = _interleaved(runners, steps, warmup)
    train_t, train_cpu, infer_t, infer_cpu = (_medians(r, c) for r in (train_runs, infer_runs) for c in (0, 1))

    def inference_row(m: str, t: str) -> dict[str, Any]:
        key = ("reward", target) if m == "reward" else (m, t)
        return {"phase": "inference", "method": m, "batch": infer_batch, "time_s": infer_t[key],
                "cpu_s": infer_cpu[key], "peak_mem_mb": mem[("inference", *key)][1],
                "held_mb": mem[("inference", *key)][0], "model": t if m == "ft" else model,
                "target": t if m in ("prt", "eft") else None}

    rows = [{"phase": "train", "method": m, "batch": train_batch, "time_s": train_t[m], "cpu_s": train_cpu[m],
             "peak_mem_mb": mem[("train", m)][1], "held_mb": mem[("train", m)][0], "model": model,
             "cached_base": m == "prt"} for m in ("ft", "prt")]
    rows += [inference_row(m, target) for m in INFERENCE]
    cpu = str(device) == "cpu"  # CPU seconds: the same ratios, unaffected by other processes competing for the cores
    transfers = []
    for t in all_targets:
        mine = {m: (("reward", target) if m == "reward" else (m, t)) for m in INFERENCE}
        mine_runs = {m: infer_runs[k] for m, k in mine.items()}
        ratios, limits = _paired_ratios(train_runs, mine_runs, 0)
        ratios["prt/ft train memory"] = mem[("train", "prt")][1] / max(mem[("train", "ft")][1], 1e-9)
        ratios["prt/eft inference memory"] = (mem[("inference", *mine["prt"])][1]
                                              / max(mem[("inference", *mine["eft"])][1], 1e-9))
        ratios_cpu, limits_cpu = _paired_ratios(train_runs, mine_runs, 1)
        transfers.append({"target": t, "ratios": ratios, "limits": limits,
                          "ratios_cpu_time": ratios_cpu if cpu else None,
                          "limits_cpu_time": limits_cpu if cpu else None})
    result = {
        "schema": PROFILE_SCHEMA, "modality": "vision", "device": str(device), "rows": rows,
        "extra_rows": [{"phase": "train", "method": "prt", "batch": train_batch, "time_s": train_t["prt_uncached"],
                        "cpu_s": train_cpu["prt_uncached"], "model": model, "cached_base": False},
                       {"phase": "train", "method": "base forward", "batch": train_batch, "time_s": train_t["forward"],
                        "cpu_s": train_cpu["forward"], "model": model}]
        + [{**inference_row(m, t), "target": t} for t in all_targets[1:] for m in INFERENCE if m != "reward"],
        **{k: v for k, v in transfers[0].items() if k != "target"},
        "transfers": transfers,
        "config": {"model": model, "target": target, "targets": list(all_targets[1:]), "train_batch": train_batch,
                   "infer_batch": infer_batch, "steps": steps, "warmup": warmup, "threads": torch.get_num_threads()},
        "environment": environment(str(device)),
    }
    if progress:
        print_table(result)
    if out is not None:
        atomic_write_json(out, result)
    return result


INFERENCE = ("ft", "reward", "prt", "eft")


def time_ratios(train: dict[str, float], infer: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """(measured ratios, their physical limits) from one clock's medians (see the module's docstring)."""
    t, s = infer["ft"], infer["reward"]          # the target's tower, the source's tower
    f, b = train["ft"], train["forward"]        # an FT step, the frozen base's forward on its batch
    ratios = {
        "prt/ft train time": train["prt"] / f,
        "prt_uncached/ft train time": train["prt_uncached"] / f,
        "prt/ft inference time": infer["prt"] / t,
        "prt/eft inference time": infer["prt"] / infer["eft"],
        "prt/(ft+reward) inference time": infer["prt"] / (t + s),
        "eft/(ft+2 reward) inference time": infer["eft"] / (t + 2 * s),
    }
    limits = {
        "prt/ft train time": 1.0,
        "prt_uncached/ft train time": (f + b) / f,
        "prt/ft inference time": (t + s) / t,
        "prt/eft inference time": (t + s) / (t + 2 * s),
        "prt/(ft+reward) inference time": 1.0,
        "eft/(ft+2 reward) inference time": 1.0,
    }
    return ratios, limits


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"prt-bench profile vision ({result['device']})")
    for col in ("phase", "method", "batch", "time (ms)", "cpu (ms)", "peak mem (MB)"):
        table.add_column(col)
    for r in result["rows"] + result["extra_rows"]:
        name = r["method"] + (" (no cache)" if r["phase"] == "train" and r["method"] == "prt" and not r.get("cached_base") else "")
        name += f" → {r['target']}" if r in result["extra_rows"] and r.get("target") else ""
        mem = f"{r['peak_mem_mb']:.1f}" if "peak_mem_mb" in r else "-"
        table.add_row(r["phase"], name, str(r["batch"]), f"{1000 * r['time_s']:.2f}", f"{1000 * r['cpu_s']:.2f}", mem)
    console = Console()
    console.print(table)
    transfers = result.get("transfers") or [result]
    for tr in transfers:
        if len(transfers) > 1:
            console.print(f"target {tr['target']}:")
        for clock, ratios, limits in (("", tr["ratios"], tr["limits"]),
                                      (" (CPU seconds)", tr.get("ratios_cpu_time") or {},
                                       tr.get("limits_cpu_time") or {})):
            for name, value in ratios.items():
                limit = limits.get(name)
                bound = "" if limit is None else f"  (physical limit {limit:.3f})"
                console.print(f"  {name}{clock}: {value:.3f}{bound}")
