"""The mini vision world: small CLIP bases pretrained here, on a CPU, in open_clip's own classes.

The family is data (``vision.yaml`` + open_clip config JSONs in ``vision_configs/``); this
module turns it into checkpoints:

1. the pretraining pool of a data version: a prefix of the first 50,000 official Fashion-MNIST
   training images, each with one noisy web-like caption (``vision_captions``);
2. each base: an open_clip ``CLIP`` built from its config and trained with open_clip's
   ``ClipLoss`` (AdamW, warm-up + cosine, logit scale clamped as open_clip's trainer does);
3. saved with ``prt_bench.vision.bases.save_base`` in open_clip's hub layout, so
   ``open_clip.create_model("local-dir:" + path)`` and ``bases.load_base(path)`` load it like
   any real checkpoint, under ``<cache>/<config-hash>/<base-name>/`` with a manifest.

A base folder is complete when its manifest exists; a finished base is never rebuilt, so an
interrupted build resumes where it stopped.

The benchmark's world is the variant ``BENCHMARK`` (the mini suite names it; ``default`` is the first
world, whose reward was its own classifier: docs/mini-vision.md).  Its bases are **shipped** with the
repository, under
``worlds/mini-vision/<config-hash>/`` with a ``SHA256SUMS.json`` (``prt_bench.mini.shipped``): a
build copies a shipped base into its cache after checking every file's sha256, and pretrains
only what is missing or fails the check.  ``prt-bench mini build vision --verify`` pretrains
every shipped base again at the thread count recorded with them and compares them bit for bit;
``--ship`` writes them (maintainers, after changing the world).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import yaml

from prt_bench.io import MANIFEST, REPO_ROOT, config_hash, deep_merge, publish_dir, read_manifest, staging_dir
from prt_bench.mini import shipped as shipping

FAMILY_FILE = Path(__file__).with_name("vision.yaml")
CONFIG_DIR = Path(__file__).with_name("vision_configs")
DEFAULT_CACHE = REPO_ROOT / ".cache" / "mini" / "vision"
SHIPPED = REPO_ROOT / "worlds" / "mini-vision"
# The variant the mini suite and `prt-bench mini build vision` use, and whose bases are shipped:
# crawls that speak a dialect swapping two pairs of class names, the older one of 40,000 images
# seen under two times, every small ViT's text tower 48 wide, drawn from seed 100
# (docs/mini-vision.md, "The benchmark's world").
BENCHMARK = "swapped-two-75-large-v1-even-t48-b"
# Bump when the build changes in a way the family file does not show (caches are keyed on it).
BUILD_VERSION = 1


def variants(path: str | os.PathLike = FAMILY_FILE) -> tuple[str, ...]:
    """The variant names the family file defines."""
    return tuple(yaml.safe_load(Path(path).read_text()).get("variants") or {})


def load_family(variant: str = "default", path: str | os.PathLike = FAMILY_FILE) -> dict[str, Any]:
    """The family file with ``variant``'s overrides applied, and each base's open_clip config inlined."""
    family = yaml.safe_load(Path(path).read_text())
    variants = family.pop("variants", {}) or {}
    if variant not in variants:
        raise ValueError(f"unknown mini vision variant {variant!r}; known: {sorted(variants)}")
    over = dict(variants[variant] or {})
    offset = over.pop("seed_offset", 0)  # every base's seed moved: the same world drawn again
    family = deep_merge(family, over)
    family["variant"] = variant
    for name, spec in family["bases"].items():
        spec["seed"] = spec["seed"] + offset
        if spec["data"] not in family["data_versions"]:
            raise ValueError(f"base {name}: unknown data version {spec['data']!r}")
        config_file = CONFIG_DIR / f"{spec['config']}.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"base {name}: no open_clip config {config_file}")
        spec["model_cfg"] = json.loads(config_file.read_text())
    return family


def world_hash(family: dict[str, Any]) -> str:
    return config_hash({"family": family, "build_version": BUILD_VERSION})


def pool(family: dict[str, Any], version: str, data_dir=None, data=None):
    """``(images uint8 [N,1,28,28], captions, kinds, labels)`` of data version ``version``'s pretraining pool
    (``data``: the pool split, when already loaded)."""
    from prt_bench.mini.vision_captions import CaptionNoise, make_captions
    from prt_bench.vision.datasets import get_dataset

    spec = family["data_versions"][version]
    data = data if data is not None else get_dataset(family["dataset"], family["pool_split"], data_dir)
    n = int(spec["pool"])
    if n > len(data):
        raise ValueError(f"data version {version}: pool {n} > {len(data)} images in {family['pool_split']}")
    labels = data.labels[:n]
    captions, kinds = make_captions(labels.tolist(), CaptionNoise(**spec["captions"]), seed=int(spec["seed"]))
    return data.images[:n], captions, kinds, labels


def pretrain(model_cfg: dict, preprocess_cfg: dict, images, captions: list[str], *, steps: int, batch_size: int,
             lr: float, weight_decay: float, warmup: float, max_logit_scale: float, seed: int,
             desc: str = "pretrain", progress: bool = True):
    """Train an open_clip CLIP from scratch on (image, caption) pairs with ``ClipLoss``; returns (model, log)."""
    import open_clip
    import torch
    from open_clip.loss import ClipLoss

    from prt_bench.vision import transforms

    torch.manual_seed(seed)
    model = open_clip.CLIP(**model_cfg, output_dict=True)
    tokenizer = open_clip.SimpleTokenizer(context_length=model_cfg["text_cfg"]["context_length"])
    unique = sorted(set(captions))  # web captions repeat: tokenize each text once
    where = {c: i for i, c in enumerate(unique)}
    tokens = tokenizer(unique)[torch.tensor([where[c] for c in captions])]

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warm = max(1, round(warmup * steps))
    # prt_bench.schedule.warmup_cosine's curve, kept in this world's own rounding (pi * (s - warm) / n
    # differs from pi * ((s - warm) / n) in the last bit on a third of the steps): the committed
    # bases and results are this arithmetic's; it moves to the shared schedule with the world's rebuild.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    loss_fn = ClipLoss()
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(captions), generator=generator)
    cursor, losses = 0, []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, unit="step", dynamic_ncols=True)
    model.train()
    for _ in range(steps):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(captions), generator=generator), 0
        index = order[cursor:cursor + batch_size]
        cursor += batch_size
        out = model(transforms.prepare(images[index], preprocess_cfg), tokens[index])
        loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():  # open_clip's trainer clamps the temperature the same way
            model.logit_scale.clamp_(0, math.log(max_logit_scale))
        losses.append(loss.item())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    return model, {"initial_loss": losses[0], "final_loss": sum(losses[-10:]) / len(losses[-10:]),
                   "logit_scale": model.logit_scale.exp().item()}


def build_vision_world(cache_root: str | os.PathLike | None = None, variant: str = BENCHMARK, data_dir=None,
                       progress: bool = True, only: list[str] | None = None, shipped: bool = True,
                       threads: int | None = None, shipped_root: str | os.PathLike | None = None) -> dict[str, Path]:
    """Build (or find cached, or take shipped) every base of the mini vision family; returns base
    name -> folder.  ``shipped``: take the shipped bases whose hashes check out; ``threads``:
    pretraining's thread count (default: the family file's, else torch's)."""
    import resource

    import torch

    from prt_bench.mini.vision_captions import CaptionNoise, measured_shares
    from prt_bench.vision.bases import save_base

    family = load_family(variant)
    digest = world_hash(family)
    root = Path(cache_root or DEFAULT_CACHE) / digest
    names = list(family["bases"]) if only is None else list(only)
    unknown = set(names) - set(family["bases"])
    if unknown:
        raise ValueError(f"unknown mini vision bases {sorted(unknown)}; known: {list(family['bases'])}")
    paths = {name: root / name for name in names}
    todo = [n for n in names if read_manifest(paths[n]) is None]
    if shipped and todo:
        adopted = shipping.adopt(root, todo, Path(shipped_root or SHIPPED) / digest, "mini vision")
        todo = [n for n in todo if n not in adopted]
    pools: dict[str, Any] = {}
    pool_split = None
    for name in todo:
        spec = family["bases"][name]
        version = spec["data"]
        if version not in pools:
            if pool_split is None:
                from prt_bench.vision.datasets import get_dataset

                pool_split = get_dataset(family["dataset"], family["pool_split"], data_dir)
            pools[version] = pool(family, version, data=pool_split)
        images, captions, kinds, _ = pools[version]
        train = family["train"]
        t0, cpu0 = time.perf_counter(), time.process_time()
        default_threads = torch.get_num_threads()
        if threads or train.get("threads"):
            torch.set_num_threads(int(threads or train["threads"]))
        try:
            model, log = pretrain(spec["model_cfg"], family["preprocess"], images, captions, steps=int(spec["steps"]),
                                  batch_size=int(train["batch_size"]), lr=float(train["lr"]),
                                  weight_decay=float(train["weight_decay"]), warmup=float(train["warmup"]),
                                  max_logit_scale=float(train["max_logit_scale"]), seed=int(spec["seed"]),
                                  desc=f"mini vision {name}", progress=progress)
            used_threads = torch.get_num_threads()
        finally:
            torch.set_num_threads(default_threads)
        timing = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0, "threads": used_threads,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        tmp = staging_dir(paths[name])
        noise = CaptionNoise(**family["data_versions"][version]["captions"])
        save_base(model, tmp, spec["model_cfg"], family["preprocess"], kind="vision-base", mini="vision",
                  name=name, variant=variant, world_hash=digest, role=spec.get("role"), config=spec["config"],
                  data={"version": version, **family["data_versions"][version], "split": family["pool_split"],
                        "noise_rate": noise.noise_rate, "measured_caption_shares": measured_shares(kinds)},
                  train={**family["train"], "steps": spec["steps"], "seed": spec["seed"]},
                  log=log, timing=timing)
        publish_dir(tmp, paths[name])
    if todo or not (root / "family.json").is_file():
        from prt_bench.io import atomic_write_json

        atomic_write_json(root / "family.json", family)
    return paths


def ship_vision(variant: str = BENCHMARK, cache_root: str | os.PathLike | None = None,
                shipped_root: str | os.PathLike | None = None) -> Path:
    """Write the bases of a finished build to ``worlds/mini-vision/<hash>/`` with their sums."""
    family = load_family(variant)
    root = Path(cache_root or DEFAULT_CACHE) / world_hash(family)
    manifests = {n: read_manifest(root / n) for n in family["bases"]}
    missing = [n for n, m in manifests.items() if m is None]
    if missing:
        raise ValueError(f"{root}: build the whole world first (missing: {', '.join(missing)})")
    threads = {(m.get("timing") or {}).get("threads") for m in manifests.values()}
    return shipping.write(root, list(family["bases"]), Path(shipped_root or SHIPPED) / root.name,
                          {"variant": variant, "config_hash": root.name, "threads": sorted(threads - {None})})


def verify_shipped_vision(variant: str = BENCHMARK, work: str | os.PathLike | None = None, *, data_dir=None,
                          progress: bool = True, shipped_root: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Pretrain every shipped base again (in ``work``, at the shipped thread count) and compare:
    base -> the files that differ (the manifest, what produced a base, is not compared)."""
    digest = world_hash(load_family(variant))

    def rebuild(tmp: str, threads: int | None) -> Path:
        build_vision_world(tmp, variant, data_dir, progress, shipped=False, threads=threads)
        return Path(tmp) / digest

    return shipping.verify(Path(shipped_root or SHIPPED) / digest, f"mini vision ({variant})", rebuild, work)


def head_spreads(paths: dict[str, Path], variant: str = BENCHMARK) -> dict[str, dict[str, Any]]:
    """Each built base's zero-shot head on the world's downstream task, as its evaluation builds it
    (``vision.heads.head_spread``: mean cosine between class names, the closest pair)."""
    from prt_bench.vision.bases import load_base
    from prt_bench.vision.datasets.registry import get_spec
    from prt_bench.vision.heads import base_head_spread

    task = get_spec(downstream(variant)["dataset"])
    return {name: base_head_spread(load_base(path), task) for name, path in paths.items()}


def downstream(variant: str = BENCHMARK) -> dict[str, str]:
    """The downstream task of the mini world: dataset name and its train / test splits."""
    return dict(load_family(variant)["downstream"])


__all__ = ["BENCHMARK", "build_vision_world", "head_spreads", "load_family", "pool", "pretrain", "downstream",
           "MANIFEST"]
