"""The generated task data as lm-eval sees it (used by the task utils under tasks/)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

ENV_VAR = "PRT_BENCH_MINI_LM_DATA"
# a calculation in a mini_gsm gold answer line (group 1), with its parts: the running value, the
# operator, the step's number and the result (`24 + 1 = 25`)
CALC = re.compile(r"has ((?P<value>-?\d+) (?P<operator>[-+*]) (?P<number>-?\d+) = (?P<result>-?\d+))")


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


def calculation_items(docs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """mini_gsm's knowledge probe: one item per calculation in each problem's gold answer, in
    document order -- the problem's prompt and the gold answer up to the calculation (``context``),
    then the calculation itself -- and whether the step it does is told in a phrasing the train
    split holds out."""
    from prt_bench.mini.lm.gsm import line_held_out

    items = []
    for i, doc in enumerate(docs):
        answer, offset = doc["answer"], 0
        for line in answer.split("\n"):
            for m in CALC.finditer(line):
                items.append({"doc": i, "context": f"{doc['prompt']} " + answer[:offset + m.start(1)].rstrip(" "),
                              "calculation": m.group(1), "held_out_phrasing": line_held_out(doc["question"], line)})
            offset += len(line) + 1
    return items


def load_probe_dataset(task: str, data_dir: str | os.PathLike | None = None, variant: str = "default", **_):
    """A datasets.DatasetDict whose test split is ``calculation_items`` of `task`'s test split."""
    import datasets

    test = load_split_dataset(task, data_dir, variant)["test"]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(calculation_items(test))})
