"""The generated task data as lm-eval sees it (used by the task utils under tasks/)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "PRT_BENCH_MINI_LM_DATA"


def resolve_data_dir(data_dir: str | os.PathLike | None = None, variant: str = "default") -> Path:
    """An explicit folder, then $PRT_BENCH_MINI_LM_DATA, then the `variant` build's data folder."""
    explicit = data_dir or os.environ.get(ENV_VAR)
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"mini LM data dir {p} does not exist (from --metadata data_dir or ${ENV_VAR})")
        return p
    from prt_bench.mini.lm.build import data_dir as build_data_dir

    return build_data_dir(variant)


def load_split_dataset(task: str, data_dir: str | os.PathLike | None = None, variant: str = "default", **_):
    """A datasets.DatasetDict with the train and test splits of `task` from its JSONL."""
    import datasets

    root = resolve_data_dir(data_dir, variant)
    files = {s: str(root / task / f"{s}.jsonl") for s in ("train", "test")}
    for s, f in files.items():
        if not Path(f).is_file():
            raise FileNotFoundError(f"{task} {s} split not found at {f}; run `prt-bench mini build lm`")
    return datasets.load_dataset("json", data_files=files)
