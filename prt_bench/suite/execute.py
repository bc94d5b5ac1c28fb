"""Running one cell, wherever an executor runs it (``prt_bench.suite.executors``).  A ``Job``
is the cell and the local paths it needs (JSON-able, so it travels to a subprocess or a Ray
task); ``run_job`` does the work through the cell's modality and returns the record, which
the runner stores.

Training writes into a temporary folder that is renamed into place only when complete, and
the cell's record is written atomically after that: a run killed at any moment leaves either
a finished cell or nothing, never half of one.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prt_bench.io import environment, publish_dir, staging_dir
from prt_bench.suite import modalities
from prt_bench.suite.plan import Cell
from prt_bench.suite.store import make_record

COMPLETE = ".complete"
# a training cell's process count (`prt-bench run --train-processes N`), for modalities that train in several
TRAIN_PROCESSES_ENV = "PRT_BENCH_TRAIN_PROCESSES"


@dataclass
class Job:
    """One cell and what it needs on this machine."""

    cell: Cell
    suite: str
    paths: dict[str, str]              # role -> local path: base/data/out (train); target/source/ft/reward/model
    logs: str                          # folder of the cells' logs
    env: dict[str, str] = field(default_factory=dict)   # set in the process that runs it

    @property
    def cell_id(self) -> str:
        return self.cell.cell_id

    @property
    def log(self) -> Path:
        return Path(self.logs) / f"{self.cell.cell_id}.log"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Job":
        return cls(**{**d, "cell": Cell(**d["cell"])})


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


def run_job(job: Job) -> dict[str, Any]:
    """Do the work of one cell and return its record (the runner stores it)."""
    import torch

    from prt_bench.meter import PeakMemory

    cell = job.cell
    os.environ.update(job.env)
    quiet_libraries()
    _seed_everything(cell.seed)
    threads = os.environ.get("PRT_BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    modality = modalities.get(cell.modality)
    start, cpu = time.perf_counter(), time.process_time()
    with PeakMemory("cuda" if torch.cuda.is_available() else "cpu") as meter:
        if cell.kind == "train":
            results, primary, extra = _train(modality, job), "final_loss,none", {"output": job.paths["out"]}
        else:
            results, primary, samples = _evaluate(modality, job)
            extra = {"samples": samples}  # the store writes them beside the record
    # cpu_s: the process's CPU seconds over every thread (torch's intra-op threads included)
    timing = {"wall_s": round(time.perf_counter() - start, 3), "cpu_s": round(time.process_time() - cpu, 3),
              "peak_mem_mb": round(meter.peak_mb, 1)}
    env = {**environment(), "models": models_used(job)}
    return make_record(cell, job.suite, results, primary, env, timing, **extra)


MODEL_ROLES = ("base", "target", "source", "ft", "reward", "model")
NOT_MODELS = ("data", "out")


def models_used(job: Job) -> dict[str, Any]:
    """What each model role of the cell was: a hub id and its commit, or a folder's content hash
    (a trained checkpoint: the hash of its completion marker, which holds its weights' hashes)."""
    out = {}
    roles = [*MODEL_ROLES, *(r for r in job.paths if r not in MODEL_ROLES and r not in NOT_MODELS)]  # + reward0, ft1...
    for role in roles:
        path = job.paths.get(role)
        if not path or not Path(path).exists():
            continue
        marker = Path(path) / COMPLETE
        key = (str(path), marker.stat().st_mtime_ns if marker.is_file() else Path(path).stat().st_mtime_ns)
        if key not in _IDENTITY:
            from prt_bench.hub import identity
            from prt_bench.io import file_hash

            _IDENTITY[key] = {"marker_hash": file_hash(marker)} if marker.is_file() else identity(path)
        out[role] = _IDENTITY[key]
    return out


_IDENTITY: dict[tuple[str, int], dict[str, Any]] = {}


def _train(modality: modalities.Modality, job: Job) -> dict[str, Any]:
    """Train into a temporary folder, mark it complete, rename it into place.  A complete
    checkpoint already in place (a run killed before its record, or one trained outside the
    runner, e.g. with accelerate) is adopted as it is."""
    from prt_bench.io import read_manifest

    cell = job.cell
    out = Path(job.paths["out"])
    if not checkpoint_done(out):
        tmp = staging_dir(out)
        modality.train(cell.method, job.paths["base"], job.paths["data"], tmp, seed=cell.seed, alpha=cell.alpha,
                       options=cell.config["train"])
        mark_complete(tmp, cell.cell_id)
        publish_dir(tmp, out)
    manifest = read_manifest(out) or {}
    return {cell.task: {f"{k},none": manifest[k] for k in ("initial_loss", "final_loss") if k in manifest}}


def _evaluate(modality: modalities.Modality, job: Job) -> tuple[dict[str, Any], str, dict[str, Any]]:
    cell = job.cell
    for role in cell.needs:  # the trained checkpoints this cell combines
        verify_checkpoint(job.paths[role])
    task = cell.config["task_config"]
    extra = {k: cell.config[k] for k in ("merge", "strength") if k in cell.config}  # only some cells carry them
    metrics, samples = modality.evaluate(cell.method, job.paths, task, cell.config["eval"], lam=cell.config["lam"],
                                         seed=cell.seed, **extra)
    # the samples must give back every metric before they are kept as its evidence
    from prt_bench.suite.samples import compare

    diffs = compare(metrics, modality.rescore(samples["header"], samples["rows"], task))
    if diffs:
        raise AssertionError(f"the per-sample records do not reproduce the metrics: {'; '.join(diffs[:3])}")
    primary = _checked_primary(metrics, task.get("primary_metric", modality.default_primary))
    return {cell.task: metrics}, primary, samples


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
    for name in ("root", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in modalities.names():
        modalities.get(name).quiet()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    import torch

    torch.manual_seed(seed)
