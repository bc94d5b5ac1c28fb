"""Vision results in CLIP_benchmark's shape: one JSON per evaluation cell, as ``clip_benchmark
eval`` writes it (``dataset``, ``model``, ``pretrained``, ``task``, ``language``, ``metrics``),
so ``clip_benchmark build *.json`` and scripts written for its files read prt-bench's cells.

``model`` is the base whose classifier scores the images (the target); ``pretrained`` says what
was done with it -- ``zeroshot``, ``ft`` (FT of the source, ``ft:<source>``, when the FT model is
the source's), ``prt:<source>``, ``eft:<source>``, ``reward_only:<source>``, with ``@alpha=`` when
α ≠ 0 and ``@seed=`` when the seed ≠ 0.  Flat extra fields (``split``, ``cell_id``, ``suite``)
become columns of ``build``'s CSV like its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prt_bench.io import atomic_write_json

CLIP_BENCHMARK_METRICS = ("acc1", "acc5", "mean_per_class_recall")


def clip_benchmark_record(record: dict[str, Any]) -> dict[str, Any]:
    method, source, target = record["method"], record.get("source"), record.get("target")
    what = {"zeroshot": "zeroshot", "ft_target": "ft"}.get(method)
    if what is None:
        what = f"{'ft' if method == 'ft_source' else method}:{source}"
    if method == "ft_source":
        target = source  # the FT model is the source's
    if record.get("alpha"):
        what += f"@alpha={record['alpha']:g}"
    if record.get("seed"):
        what += f"@seed={record['seed']}"
    metrics = (record.get("results") or {}).get(record["task"]) or {}
    config = (record.get("config") or {}).get("task_config") or {}
    return {
        "dataset": config.get("dataset", record["task"]),
        "model": target,
        "pretrained": what,
        "task": "zeroshot_classification",
        "language": "en",
        "metrics": {k: metrics[f"{k},none"] for k in CLIP_BENCHMARK_METRICS if f"{k},none" in metrics},
        "split": config.get("split", "test"),
        "cell_id": record["cell_id"],
        "suite": record.get("suite"),
    }


def export_clip_benchmark(results: str | Path, out: str | Path) -> list[Path]:
    """Write ``out/<cell_id>.json`` for every vision evaluation cell of a results folder."""
    from prt_bench.suite.reference import read_records

    written = []
    for cell_id, record in read_records(results).items():
        if record.get("kind") == "eval" and record.get("modality") == "vision":
            written.append(atomic_write_json(Path(out) / f"{cell_id}.json", clip_benchmark_record(record)))
    if not written:
        raise ValueError(f"{results} holds no vision evaluation cells")
    return written
