"""The results store: one JSON per cell, written atomically, and the table rebuilt from them.

Layout (``docs/suites.md`` and the interfaces note describe the record)::

    results/<suite>/cells/<cell_id>.json
    results/<suite>/table.csv
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from pathlib import Path
from typing import Any

from prt_bench.io import CELL_SCHEMA, atomic_write_json, atomic_write_text, read_json

TABLE_COLUMNS = ["cell_id", "suite", "modality", "task", "scenario", "method", "source", "target", "alpha", "seed",
                 "metric", "value", "stderr", "wall_s", "peak_mem_mb"]


def cells_dir(results: Path) -> Path:
    return Path(results) / "cells"


def cell_path(results: Path, cell_id: str) -> Path:
    return cells_dir(results) / f"{cell_id}.json"


class CorruptRecord(RuntimeWarning):
    """A cell record that cannot be read: the cell counts as not done (and runs again)."""


def _read_record(p: Path) -> dict[str, Any] | None:
    import warnings

    try:
        record = read_json(p)
    except (OSError, ValueError) as e:
        warnings.warn(f"{p}: unreadable cell record ({e}); the cell counts as not done", CorruptRecord, stacklevel=3)
        return None
    if not isinstance(record, dict):
        warnings.warn(f"{p}: a cell record must be a JSON object, found {type(record).__name__}; the cell counts as "
                      "not done", CorruptRecord, stacklevel=3)
        return None
    return record


def read_cell(results: Path, cell_id: str) -> dict[str, Any] | None:
    """The stored record of a finished cell, or None (absent, unreadable -- with a warning naming
    the file -- or not done)."""
    p = cell_path(results, cell_id)
    if not p.is_file():
        return None
    record = _read_record(p)
    if record is None or record.get("status") != "done" or record.get("cell_id") != cell_id:
        return None
    return record


def make_record(cell, suite: str, results: dict[str, Any], primary_metric: str | None, environment: dict[str, Any],
                timing: dict[str, float], **extra: Any) -> dict[str, Any]:
    """A finished cell's record; its timing keeps when it finished (UTC), which a file's date,
    reset by every copy and checkout, does not."""
    finished = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "schema": CELL_SCHEMA,
        "cell_id": cell.cell_id,
        "suite": suite,
        "kind": cell.kind,
        "modality": cell.modality,
        "task": cell.task,
        "scenario": cell.scenario,
        "method": cell.method,
        "source": cell.source,
        "target": cell.target,
        "alpha": cell.alpha,
        "seed": cell.seed,
        "config": cell.config,
        "config_hash": cell.cell_id,
        "results": results,
        "primary_metric": primary_metric,
        "environment": environment,
        "timing": {**timing, "finished_at": finished},
        "status": "done",
        **extra,
    }


def write_cell(results: Path, record: dict[str, Any]) -> Path:
    """Store a finished cell.  An evaluation's samples travel in the record as ``{"header",
    "rows"}`` and are written first, to their own file (``prt_bench.suite.samples``); the record
    then keeps their hash, so it is complete only when they are."""
    from prt_bench.suite import samples

    inline = record.get("samples")
    if isinstance(inline, dict) and "rows" in inline:
        meta = samples.write(results, record["cell_id"], inline.get("header") or {}, inline["rows"])
        record = {**record, "samples": meta}
    return atomic_write_json(cell_path(results, record["cell_id"]), record)


def copy_cell(source: Path, results: Path, record: dict[str, Any]) -> Path:
    """Store another results folder's record of a cell, with its samples file."""
    import shutil

    from prt_bench.suite import samples

    src = samples.samples_path(source, record["cell_id"])
    if isinstance(record.get("samples"), dict) and src.is_file():
        dst = samples.samples_path(results, record["cell_id"])
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return atomic_write_json(cell_path(results, record["cell_id"]), record)


def all_cells(results: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted(cells_dir(results).glob("*.json")):
        record = _read_record(p)
        if record is not None and record.get("status") == "done":
            out.append(record)
    return out


def table_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (evaluation cell, metric); `<metric>_stderr,<filter>` goes in the stderr column."""
    rows = []
    for r in records:
        if r.get("kind") != "eval":
            continue
        for task_metrics in r.get("results", {}).values():
            for key, value in sorted(task_metrics.items()):
                name, _, filt = key.partition(",")
                # metrics are "<metric>,<filter>"; bookkeeping like n_samples stays in the JSON
                if not filt or name.endswith("_stderr") or not _is_number(value):
                    continue
                stderr = task_metrics.get(f"{name}_stderr,{filt}" if filt else f"{name}_stderr")
                rows.append({
                    "cell_id": r["cell_id"], "suite": r["suite"], "modality": r["modality"], "task": r["task"],
                    "scenario": r.get("scenario") or "", "method": r["method"], "source": r.get("source") or "",
                    "target": r["target"], "alpha": r.get("alpha", 0.0), "seed": r.get("seed", 0), "metric": key,
                    "value": value, "stderr": stderr if _is_number(stderr) else "",
                    "wall_s": r.get("timing", {}).get("wall_s", ""), "peak_mem_mb": r.get("timing", {}).get("peak_mem_mb", ""),
                })
    rows.sort(key=lambda row: (row["modality"], row["task"], row["method"], row["source"], row["target"],
                               row["alpha"], row["seed"], row["metric"]))
    return rows


def write_table(results: Path) -> Path:
    """Rebuild `table.csv` from the cell files alone (so it is never out of step with them)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table_rows(all_cells(results)))
    return atomic_write_text(Path(results) / "table.csv", buf.getvalue())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class ResultsInUse(RuntimeError):
    """Another run holds the results folder."""


LOCK_FILE = ".run.lock"
HOLDER_FILE = ".run.holder.json"


class RunLock:
    """One run at a time per results folder (two runs of one suite, or a Ray driver and a local
    run on a shared filesystem, would race on the same cells).  An OS file lock (``filelock``):
    released when the process ends, however it ends.  The holder (pid, host, command, start)
    is written beside it so that the refusal can name it."""

    def __init__(self, results: Path):
        from filelock import FileLock

        self.results = Path(results)
        self.lock = FileLock(str(self.results / LOCK_FILE), timeout=0)

    def __enter__(self) -> "RunLock":
        import datetime
        import os
        import socket
        import sys

        from filelock import Timeout

        self.results.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire()
        except Timeout:
            raise ResultsInUse(f"{self.results} is in use by another run ({self.holder()}); wait for it to finish, "
                               "or give this run another --results folder") from None
        atomic_write_json(self.results / HOLDER_FILE, {
            "pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
            "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
        return self

    def __exit__(self, *exc) -> None:
        (self.results / HOLDER_FILE).unlink(missing_ok=True)
        self.lock.release()

    def holder(self) -> str:
        try:
            h = read_json(self.results / HOLDER_FILE)
            return f"pid {h['pid']} on {h['host']} since {h['since']}: {h['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"
