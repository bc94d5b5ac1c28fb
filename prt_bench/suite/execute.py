"""Running one cell, wherever it runs: in the runner's process, a subprocess on one GPU, or a
Ray task.  A *job* is a plain JSON-able dict (the cell and the local paths it needs), so the
same ``run_job`` serves all three.

Training writes into a temporary folder that is renamed into place only when complete, and
the cell's record is written atomically after that: a run killed at any moment leaves either
a finished cell or nothing, never half of one.
"""

from __future__ import annotations

import os
import random
import resource
import threading
import time
from pathlib import Path
from typing import Any

from prt_bench.io import environment
from prt_bench.suite import adapters
from prt_bench.suite.plan import Cell
from prt_bench.suite.store import make_record

COMPLETE = ".complete"


def cell_from_dict(d: dict[str, Any]) -> Cell:
    return Cell(**d)


def checkpoint_done(path: str | Path) -> bool:
    """A complete checkpoint: the marker *and* weights (a marker alone is not a checkpoint)."""
    path = Path(path)
    return (path / COMPLETE).is_file() and any(path.glob("*.safetensors"))


def mark_complete(path: Path, cell_id: str) -> None:
    """The marker holds the sha256 of every weight file, checked before the checkpoint is used."""
    from prt_bench.io import atomic_write_json, file_hash

    atomic_write_json(path / COMPLETE, {"cell_id": cell_id,
                                        "sha256": {p.name: file_hash(p) for p in sorted(path.glob("*.safetensors"))}})


def verify_checkpoint(path: str | Path) -> None:
    """Refuse weights that changed since training (a marker without hashes, as `touch .complete`
    writes for a checkpoint trained outside the runner, has nothing to compare)."""
    import json

    from prt_bench.io import file_hash

    path = Path(path)
    try:
        expected = json.loads((path / COMPLETE).read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    for name in expected:
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path / name}: weight file missing; delete {path} to train it again")
    # a checkpoint shared by several cells is hashed once per process while its files stay as they were
    signature = tuple((n, (path / n).stat().st_size, (path / n).stat().st_mtime_ns) for n in sorted(expected))
    if _VERIFIED.get(path) == signature:
        return
    for name, digest in expected.items():
        if file_hash(path / name) != digest:
            raise ValueError(f"{path / name}: weights changed since training (sha256 differs from {path / COMPLETE}); "
                             f"delete {path} to train it again")
    _VERIFIED[path] = signature


_VERIFIED: dict[Path, tuple] = {}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Do the work of one cell and return its record (the caller stores it)."""
    cell = cell_from_dict(job["cell"])
    os.environ.update(job.get("env", {}))
    quiet_libraries()
    _seed_everything(cell.seed)
    threads = os.environ.get("PRT_BENCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    meter = _PeakMemory()
    start = time.perf_counter()
    with meter:
        if cell.kind == "train":
            results, primary = _train(cell, job), "final_loss,none"
        else:
            results, primary = _evaluate(cell, job)
    timing = {"wall_s": round(time.perf_counter() - start, 3), "peak_mem_mb": round(meter.peak_mb, 1)}
    extra = {"output": job["paths"]["out"]} if cell.kind == "train" else {}
    return make_record(cell, job["suite"], results, primary, environment(), timing, **extra)


def _train(cell: Cell, job: dict[str, Any]) -> dict[str, Any]:
    """Train into a temporary folder, mark it complete, rename it into place.  A complete
    checkpoint already in place (a run killed before its record, or one trained outside the
    runner, e.g. with accelerate) is adopted as it is."""
    from prt_bench.io import read_manifest

    out = Path(job["paths"]["out"])
    if not checkpoint_done(out):
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)
        train = adapters.lm_train if cell.modality == "lm" else adapters.vision_train
        train(cell.method, job["paths"]["base"], job["paths"]["data"], tmp, seed=cell.seed, alpha=cell.alpha,
              options=cell.config["train"])
        mark_complete(tmp, cell.cell_id)
        adapters._replace_dir(tmp, out)
    manifest = read_manifest(out) or {}
    return {cell.task: {f"{k},none": manifest[k] for k in ("initial_loss", "final_loss") if k in manifest}}


def _evaluate(cell: Cell, job: dict[str, Any]) -> tuple[dict[str, Any], str]:
    for role in cell.needs:  # the trained checkpoints this cell combines
        verify_checkpoint(job["paths"][role])
    task = cell.config["task_config"]
    options = cell.config["eval"]
    lam = cell.config["lam"]
    if cell.modality == "lm":
        results, n = adapters.lm_eval(cell.method, job["paths"], task, options, lam=lam, seed=cell.seed)
        name = task["lm_eval_task"]
        metrics = dict(results.get(name, next(iter(results.values()), {})))
        for derived, parts in (task.get("derived") or {}).items():
            metrics[derived] = sum(metrics[p] for p in parts) / len(parts)
        if name in n and n[name] is not None:
            metrics["n_samples"] = n[name]
        return {cell.task: metrics}, _checked_primary(metrics, task.get("primary_metric", "exact_match,strict-match"))
    opts = {k: v for k, v in {**options, **task}.items() if k == "batch_size"}
    out = adapters.vision_eval(cell.method, job["paths"], task["dataset"], task.get("split", "test"), opts, lam=lam)
    metrics = {f"{k},none": out[k] for k in ("acc1", "acc5", "mean_per_class_recall", "nll") if k in out}
    if "n" in out:
        metrics["n_samples"] = out["n"]
    return {cell.task: metrics}, _checked_primary(metrics, task.get("primary_metric", "acc1,none"))


def _checked_primary(metrics: dict[str, Any], primary: str) -> str:
    """The cell's headline number must exist and be a finite number: a missing metric would
    make the report quietly use another, and NaN would be recorded as a result."""
    from prt_bench.io import finite_number

    if primary not in metrics:
        known = sorted(k for k, v in metrics.items() if finite_number(v) and "_stderr" not in k)
        raise KeyError(f"primary_metric {primary!r} is not among the evaluator's metrics ({', '.join(known)})")
    if not finite_number(metrics[primary]):
        raise FloatingPointError(f"primary metric {primary} is {metrics[primary]!r}, not a finite number")
    return primary


def quiet_libraries() -> None:
    """The runner shows its own progress; the libraries' bars and info logs would bury it."""
    import logging
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    for name in ("lm_eval", "lm-eval", "transformers", "datasets", "root", "open_clip", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.utils.logging.disable_progress_bar()
    except ImportError:
        pass


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    import torch

    torch.manual_seed(seed)


class _PeakMemory:
    """Peak memory of the work inside the block: GPU allocator peak on CUDA, else sampled RSS."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._cuda = False

    def __enter__(self):
        import torch

        self._cuda = torch.cuda.is_available()
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, _rss_mb())
            if self._stop.wait(self.interval):
                return

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, _rss_mb())
        if self._cuda:
            import torch

            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20
        return False


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
