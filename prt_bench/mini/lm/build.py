"""`prt-bench mini build lm`: the shared tokenizer, the task data and the pretrained bases,
cached under `.cache/mini/lm/<config-hash>/` (a second build with the same config reuses them).

The default world's tokenizer and bases are **shipped** with the repository, under
`worlds/mini-lm/<config-hash>/` with a `SHA256SUMS.json`: a build copies a shipped part into
its cache after checking every file's sha256 (a part that fails the check is pretrained
instead, with a warning), so nobody waits for pretraining they did not come for.
`prt-bench mini build lm --verify` pretrains every shipped part again, at the thread count
recorded with them, and compares the files bit for bit; `--ship` writes them (maintainers).

Layout of one build:
    <root>/tokenizer/                     the one tokenizer every base shares
    <root>/data/mini_gsm/{train,test}.jsonl
    <root>/data/mini_ifeval/{train,test}.jsonl
    <root>/<base-name>/                   HF checkpoint (safetensors) + tokenizer + prt_manifest.json
    <root>/bases.json                     base name -> path, roles, scenarios, data paths
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from prt_bench.io import (MINI_LM_SCHEMA, REPO_ROOT, atomic_write_json, atomic_write_text, config_hash, deep_merge,
                          publish_dir, read_manifest, staging_dir, write_manifest)
from prt_bench.mini import shipped as shipping

FAMILY_YAML = Path(__file__).resolve().parents[1] / "lm_bases.yaml"
CACHE = REPO_ROOT / ".cache" / "mini" / "lm"
SHIPPED = REPO_ROOT / "worlds" / "mini-lm"
SUMS = shipping.SUMS
# Bump when a generator or the pretraining loop changes what a config produces.
FORMAT_VERSION = 2


def load_config(variant: str = "default", path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The family YAML with `variant`'s overrides applied (what the cache key hashes)."""
    import yaml

    with open(path or FAMILY_YAML, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    variants = raw.pop("variants", {}) or {}
    if variant not in variants:
        raise ValueError(f"unknown mini LM variant {variant!r}; known: {', '.join(variants) or 'none'}")
    over = dict(variants[variant] or {})
    # every base at once: `steps` sets, `steps_scale` multiplies its pretraining steps;
    # `seed_offset` moves its seed (the same world drawn again)
    steps, scale, offset = over.pop("steps", None), over.pop("steps_scale", 1), over.pop("seed_offset", 0)
    cfg = deep_merge(raw, over)
    cfg["bases"] = {name: {"name": name, **spec, "steps": steps if steps is not None else int(spec["steps"] * scale),
                           "seed": spec["seed"] + offset}
                    for name, spec in cfg["bases"].items()}
    cfg["variant"] = variant
    cfg["format_version"] = FORMAT_VERSION
    return cfg


def world_hash(cfg: dict) -> str:
    """The cache key of a build: everything in the resolved config (the variant name aside)."""
    return config_hash({k: v for k, v in cfg.items() if k != "variant"})


def build_root(cfg: dict, out: str | os.PathLike | None = None) -> Path:
    return Path(out or CACHE) / world_hash(cfg)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def build_data(cfg: dict, root: Path) -> dict[str, dict[str, Path]]:
    """Write the mini_gsm and mini_ifeval splits (cheap; rewritten only when missing)."""
    from prt_bench.mini.lm import gsm, ifeval

    g, f = cfg["tasks"]["mini_gsm"], cfg["tasks"]["mini_ifeval"]
    paths = {t: {s: root / "data" / t / f"{s}.jsonl" for s in ("train", "test")} for t in ("mini_gsm", "mini_ifeval")}
    if not all(p.is_file() for d in paths.values() for p in d.values()):
        gsm_cfg = gsm.GsmConfig(train_max=g["train_max"], test_max=g["test_max"], max_steps=g["max_steps"],
                                test_min=g.get("test_min"), held_out_share=g["held_out_share"],
                                test_names=g.get("test_names", "held_out"),
                                answer_lines=g.get("answer_lines", "restate"),
                                question_layout=g.get("question_layout", "paragraph"))
        splits = {"mini_gsm": gsm.generate(g["n_train"], g["n_test"], seed=g["seed"], config=gsm_cfg),
                  "mini_ifeval": ifeval.generate(f["n_train"], f["n_test"], seed=f["seed"])}
        for task, d in paths.items():
            for split, p in d.items():
                _write_jsonl(p, splits[task][split])
    return paths


def corpus_docs(cfg: dict, version: str) -> list[str]:
    from prt_bench.mini.lm import corpus

    return corpus.generate(corpus.CorpusConfig(**cfg["corpora"][version]))


def build_tokenizer(cfg: dict, root: Path, data: dict):
    """The shared tokenizer, trained once per build on both corpora and the task train splits."""
    from transformers import AutoTokenizer

    from prt_bench.mini.lm.tokenizer import train_bpe

    path = root / "tokenizer"
    if (path / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(path)
    texts = [d for v in sorted(cfg["corpora"]) for d in corpus_docs(cfg, v)]
    for task in ("mini_gsm", "mini_ifeval"):
        with open(data[task]["train"], encoding="utf-8") as f:
            texts += [r["prompt"] + " " + r["response"] for r in map(json.loads, f)]
    tok = train_bpe(texts, cfg["tokenizer"]["vocab_size"])
    tmp = staging_dir(path)
    tok.save_pretrained(tmp)
    publish_dir(tmp, path, replace=False)
    return AutoTokenizer.from_pretrained(path)


def base_config(cfg: dict, base: dict) -> dict:
    """Everything one base depends on (its cache key inside the build), the base it goes on
    training from (`init`) included."""
    bc = {"base": base, "arch": cfg["sizes"][base["size"]], "corpus": cfg["corpora"][base["corpus"]],
          "pretrain": {**cfg["pretrain"], **base.get("pretrain", {})}, "tokenizer": cfg["tokenizer"],
          "format_version": FORMAT_VERSION}
    if base.get("init"):
        bc["init"] = base_config(cfg, cfg["bases"][base["init"]])
    return bc


def _ancestors(cfg: dict, name: str) -> list[str]:
    """The bases `name` goes on training from, nearest first (stops at a cycle)."""
    out: list[str] = []
    while (name := cfg["bases"].get(name, {}).get("init")) and name not in out:
        out.append(name)
    return out


def _check_inits(cfg: dict) -> None:
    for name, base in cfg["bases"].items():
        parent = base.get("init")
        if parent is None:
            continue
        if parent not in cfg["bases"]:
            raise ValueError(f"mini LM base {name}: init names no base of the family: {parent!r}")
        if name in _ancestors(cfg, parent):
            raise ValueError(f"mini LM base {name}: its init chain comes back to it")
        if cfg["bases"][parent]["family"] != base["family"]:
            raise ValueError(f"mini LM base {name}: init {parent} is another family")
        a, b = cfg["sizes"][cfg["bases"][parent]["size"]], cfg["sizes"][base["size"]]
        if {k: v for k, v in a.items() if k != "layers"} != {k: v for k, v in b.items() if k != "layers"} \
                or not a["layers"] <= b["layers"] <= 2 * a["layers"]:
            raise ValueError(f"mini LM base {name}: init {parent} must have the same shape, or the same width "
                             "and up to half the layers (block expansion)")


def _pretrain_one(job: dict) -> dict:
    """Worker: pretrain one base (runs in its own process when building in parallel)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(job["threads"])
    try:
        return _pretrain_with(job)
    finally:
        # In-process builds must not leave the caller on another thread count: CPU float
        # reductions, and so the caller's later results, depend on it.
        torch.set_num_threads(threads)


def _pretrain_with(job: dict) -> dict:
    from transformers import AutoTokenizer

    from prt_bench.mini.lm.pretrain import pack, pretrain

    cfg, base, out = job["cfg"], job["base"], Path(job["out"])
    tok = AutoTokenizer.from_pretrained(job["tokenizer"])
    tokens = pack(corpus_docs(cfg, base["corpus"]), tok)
    p = job["config"]["pretrain"]
    tmp = staging_dir(out)
    init = out.parent / base["init"] if base.get("init") else None
    stats = pretrain(tmp, family=base["family"], arch=cfg["sizes"][base["size"]], tokens=tokens, tokenizer=tok,
                     steps=base["steps"], batch_size=p["batch_size"], block_size=p["block_size"], lr=p["lr"],
                     warmup=min(p["warmup"], max(1, base["steps"] // 10)), seed=base["seed"],
                     desc=base["name"], progress=job["progress"], init=init)
    write_manifest(tmp, kind="mini-lm-base", name=base["name"], family=base["family"], size=base["size"],
                   corpus=base["corpus"], role=base.get("role"), init=base.get("init"),
                   config=job["config"], config_hash=job["hash"],
                   corpus_tokens=len(tokens), pretrain_stats=stats)
    if out.exists() and (read_manifest(out) or {}).get("config_hash") != job["hash"]:
        import shutil

        shutil.rmtree(out)  # a stale base of an older config
    publish_dir(tmp, out, replace=False)  # a concurrent build of the same config got there first: keep it
    return {"name": base["name"], **stats}


def _built(path: Path, cfg: dict, name: str) -> bool:
    """Whether `path` holds base `name` as the current config makes it."""
    man = read_manifest(path)
    return bool(man) and man.get("config_hash") == config_hash(base_config(cfg, cfg["bases"][name]))


def _run_jobs(todo: list[dict], jobs: int, cfg: dict) -> list[dict]:
    """Pretrain the bases of `todo`, `jobs` at a time; a base that goes on training another
    (`init`) starts once that one is done.  Bases others wait for start first, then the largest."""
    waiting_on = {j["base"]["name"]: j["base"].get("init") for j in todo}
    pending_names = set(waiting_on)
    has_children = {p for p in waiting_on.values() if p}
    order = sorted(todo, key=lambda j: (len(_ancestors(cfg, j["base"]["name"])), j["base"]["name"] not in has_children,
                                        -j["base"]["steps"] * cfg["sizes"][j["base"]["size"]]["hidden"]))

    def ready(done: set[str]) -> list[dict]:
        return [j for j in order if j["base"]["name"] not in done and waiting_on[j["base"]["name"]] not in pending_names]

    built: list[dict] = []
    if jobs == 1:
        for j in order:  # fewer ancestors sort first, so each base's init exists when it starts
            built.append(_pretrain_one(j))
            pending_names.discard(j["base"]["name"])
        return built
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    started: set[str] = set()
    running: dict[Any, str] = {}
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        while pending_names:
            for j in ready(started):
                if len(running) >= jobs:
                    break
                running[pool.submit(_pretrain_one, j)] = j["base"]["name"]
                started.add(j["base"]["name"])
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                name = running.pop(fut)
                built.append(fut.result())
                pending_names.discard(name)
    return built


def build_lm(variant: str = "default", out: str | os.PathLike | None = None, *, jobs: int | None = None,
             progress: bool = True, config_path: str | os.PathLike | None = None,
             only: list[str] | None = None, shipped: bool = True, threads: int | None = None) -> dict[str, Any]:
    """Build (or reuse) the tokenizer, task data and the bases (all, or those named in `only`);
    returns the bases.json record, which lists the bases that exist.  ``shipped``: take the
    shipped parts whose hashes check out; ``threads``: each pretraining process's thread count
    (default: the cores shared among the processes)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cfg = load_config(variant, config_path)
    unknown = sorted(set(only or ()) - set(cfg["bases"]))
    if unknown:
        raise ValueError(f"unknown mini LM base(s) {', '.join(unknown)}; known: {', '.join(cfg['bases'])}")
    _check_inits(cfg)
    if only is not None:  # a base that goes on training another needs that one too
        only = set(only) | {a for n in only for a in _ancestors(cfg, n)}
    root = build_root(cfg, out)
    root.mkdir(parents=True, exist_ok=True)
    data = build_data(cfg, root)
    adopted = []
    if shipped:
        wanted = [n for n in cfg["bases"] if (only is None or n in only) and not _built(root / n, cfg, n)]
        adopted = adopt_shipped(root, (["tokenizer"] if not (root / "tokenizer" / "tokenizer.json").is_file() else [])
                                + wanted)
    build_tokenizer(cfg, root, data)
    todo = []
    for base in cfg["bases"].values():
        if only is not None and base["name"] not in only:
            continue
        bc = base_config(cfg, base)
        h = config_hash(bc)
        man = read_manifest(root / base["name"])
        if man and man.get("config_hash") == h:
            continue
        todo.append({"cfg": cfg, "base": base, "out": str(root / base["name"]), "tokenizer": str(root / "tokenizer"),
                     "config": bc, "hash": h, "progress": progress})
    built = []
    if todo:
        jobs = max(1, min(jobs or (os.cpu_count() or 1), len(todo)))
        threads = threads or max(1, (os.cpu_count() or 1) // jobs)
        for j in todo:
            j["threads"] = threads
        built = _run_jobs(todo, jobs, cfg)
    record = {
        "schema": MINI_LM_SCHEMA,
        "variant": variant,
        "root": str(root),
        "config_hash": root.name,
        "tokenizer": str(root / "tokenizer"),
        "bases": {name: str(root / name) for name in cfg["bases"] if _built(root / name, cfg, name)},
        "roles": {name: b.get("role") for name, b in cfg["bases"].items()},
        "source": next(name for name, b in cfg["bases"].items() if b.get("role") == "source"),
        "scenarios": cfg.get("scenarios", {}),
        "data": {t: {s: str(p) for s, p in d.items()} for t, d in data.items()},
        "data_dir": str(root / "data"),
        "built_now": [b["name"] for b in built],
        "shipped_now": [a for a in adopted if a != "tokenizer"],
    }
    atomic_write_json(root / "bases.json", record)
    return record


def adopt_shipped(root: Path, parts: list[str], shipped_root: Path | None = None) -> list[str]:
    """Copy the shipped ``parts`` (``tokenizer``, base names) of this build into ``root``, each
    after every one of its files matched its sha256; returns the parts copied."""
    return shipping.adopt(root, parts, (shipped_root or SHIPPED) / root.name, "mini LM")


def ship(variant: str = "default", out: str | os.PathLike | None = None,
         shipped_root: str | os.PathLike | None = None) -> Path:
    """Write the tokenizer and bases of a finished build to ``worlds/mini-lm/<hash>/`` with their sums."""
    cfg = load_config(variant)
    root = build_root(cfg, out)
    missing = [n for n in cfg["bases"] if not _built(root / n, cfg, n)]
    if missing or not (root / "tokenizer").is_dir():
        raise ValueError(f"{root}: build the whole world first (missing: {', '.join(missing) or 'tokenizer'})")
    threads = {(read_manifest(root / n) or {}).get("environment", {}).get("threads") for n in cfg["bases"]}
    return shipping.write(root, ["tokenizer", *cfg["bases"]], Path(shipped_root or SHIPPED) / root.name,
                         {"variant": variant, "config_hash": root.name, "threads": sorted(threads - {None})})


def verify_shipped(variant: str = "default", work: str | os.PathLike | None = None, *, progress: bool = True,
                   jobs: int | None = None, shipped_root: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Pretrain every shipped part again (in ``work``, at the shipped thread count) and compare:
    part -> the files that differ (prt_manifest.json, what produced a part, is not compared)."""
    def rebuild(tmp: str, threads: int | None) -> Path:
        return Path(build_lm(variant, tmp, jobs=jobs, progress=progress, shipped=False, threads=threads)["root"])

    return shipping.verify(Path(shipped_root or SHIPPED) / world_hash(load_config(variant)), f"mini LM ({variant})",
                           rebuild, work)


def data_dir(variant: str = "default", out: str | os.PathLike | None = None) -> Path:
    """The task-data folder of a build, written (without any model) if it is not there yet."""
    cfg = load_config(variant)
    root = build_root(cfg, out)
    build_data(cfg, root)
    return root / "data"
