"""The mini language world: generated tasks (mini_gsm, mini_ifeval), their pretraining corpus,
one shared tokenizer, and a family of small base LMs that prt-bench pretrains itself.

    gsm.py / ifeval.py / corpus.py   seeded generators (and the mini_ifeval checker)
    tokenizer.py                     the shared byte-level BPE
    pretrain.py                      the nanoGPT-style pretraining loop of one base
    build.py                         `prt-bench mini build lm`: cached build of the whole family
    tasks.py                         where lm-eval's task files under tasks/ find the data
The family is described in prt_bench/mini/lm_bases.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path

from prt_bench.mini.lm.build import build_lm, load_config, world_hash

__all__ = ["build_lm", "build_lm_world", "load_config", "load_family", "world_hash"]


def load_family(variant: str = "default") -> dict:
    """The resolved family config; `family["bases"]` maps base name -> spec."""
    return load_config(variant)


def build_lm_world(cache_root: str | os.PathLike | None = None, variant: str = "default",
                   progress: bool = True, jobs: int | None = None, only: list[str] | None = None) -> dict[str, Path]:
    """Build (or find cached) the family: base name -> folder, and "data:<task>" -> train JSONL,
    "data:<task>:test" -> test JSONL, "data_dir" -> the folder the task files read.  `only`:
    build just these bases (the others are listed only if already built)."""
    record = build_lm(variant, cache_root, jobs=jobs, progress=progress, only=only)
    out: dict[str, Path] = {name: Path(p) for name, p in record["bases"].items()}
    for task, splits in record["data"].items():
        out[f"data:{task}"] = Path(splits["train"])
        out[f"data:{task}:test"] = Path(splits["test"])
    out["data_dir"] = Path(record["data_dir"])
    return out
