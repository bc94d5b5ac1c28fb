"""Per-sample records: what every evaluation cell scored, item by item, stored beside the cell.

An evaluation cell's modality returns its metrics *and* its samples: one header (what the
rows mean and how the metrics aggregate them) and one row per scored item (e.g. a document
under one filter of the evaluator; an image's label, prediction and top-5 hit).  The store writes them to ``cells/<cell_id>.samples.jsonl.gz`` -- gzip with
no name and no time in it, so the same samples give the same bytes -- and the cell record
keeps the file's sha256, row count and size under ``samples``.  A record names its samples,
so a sample changed after the run no longer matches the record (``read``), and every metric
is recomputed from the rows by the modality's ``rescore`` (``prt-bench rescore``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

SAMPLES_SCHEMA = "prt-bench/samples/1"
SUFFIX = ".samples.jsonl.gz"


class SamplesError(ValueError):
    """Per-sample records that are missing, damaged, or not the ones the cell record names."""


def samples_path(results: Path, cell_id: str) -> Path:
    return Path(results) / "cells" / f"{cell_id}{SUFFIX}"


def jsonable(value: Any) -> Any:
    """numpy scalars and tuples (evaluators' per-sample values) as plain JSON values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def encode(header: dict[str, Any], rows: list[dict[str, Any]]) -> bytes:
    """The file's bytes: the header line, then one JSON line per row, gzip'ed reproducibly."""
    text = "\n".join(json.dumps(jsonable(x), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                     for x in [{"schema": SAMPLES_SCHEMA, **header}, *rows]) + "\n"
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as f:
        f.write(text.encode("utf-8"))
    return buf.getvalue()


def write(results: Path, cell_id: str, header: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Write a cell's samples atomically; returns what the cell record keeps of them."""
    from prt_bench.io import atomic_write_bytes

    blob = encode(header, rows)
    path = atomic_write_bytes(samples_path(results, cell_id), blob)
    return {"file": path.name, "sha256": hashlib.sha256(blob).hexdigest(), "n": len(rows), "bytes": len(blob)}


def read(results: Path, record: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, rows) of a cell's samples, after checking them against its record."""
    meta = record.get("samples")
    cell_id = record.get("cell_id", "?")
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
        raise SamplesError(f"cell {cell_id}: the record names no per-sample records (a record written before "
                           "they were kept; run the cell again)")
    path = samples_path(results, str(cell_id))
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise SamplesError(f"cell {cell_id}: per-sample records missing ({e})") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != meta["sha256"]:
        raise SamplesError(f"cell {cell_id}: {path.name} has sha256 {digest[:12]}…, its record says "
                           f"{meta['sha256'][:12]}…: the samples changed after the run")
    return decode(blob, where=f"cell {cell_id}")


def decode(blob: bytes, where: str = "samples") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        lines = gzip.decompress(blob).decode("utf-8").splitlines()
        header, *rows = [json.loads(line) for line in lines if line]
    except (OSError, EOFError, ValueError) as e:
        raise SamplesError(f"{where}: unreadable per-sample records ({e})") from None
    if not isinstance(header, dict) or header.get("schema") != SAMPLES_SCHEMA:
        raise SamplesError(f"{where}: per-sample records of another schema (expected {SAMPLES_SCHEMA})")
    return header, rows


def rescore(results: Path, record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(recomputed metrics, differences from the record) of one evaluation cell.

    Every number of the record must equal the recomputed one exactly; a number the record has
    and the recomputation lacks is a difference too."""
    from prt_bench.suite import modalities

    header, rows = read(results, record)
    task = record.get("task")
    stored = (record.get("results") or {}).get(task) or {}
    task_config = (record.get("config") or {}).get("task_config") or {}
    fresh = modalities.get(record["modality"]).rescore(header, rows, task_config)
    return fresh, compare(stored, fresh)


def compare(stored: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    """Every finite number of ``stored`` (metrics, errors, counts) against ``fresh``: equal, bit for bit."""
    from prt_bench.io import finite_number

    diffs = []
    for key, value in sorted(stored.items()):
        if not finite_number(value):
            continue  # errors an evaluator could not compute ("N/A"), names
        if key not in fresh:
            diffs.append(f"{key}: recorded {value!r}, not recomputable from the samples")
        elif fresh[key] != value:
            diffs.append(f"{key}: recorded {value!r}, recomputed {fresh[key]!r}")
    return diffs


def rescore_folder(results: Path) -> dict[str, list[str]]:
    """Every evaluation cell of a results folder rescored: cell id -> its problems (empty when
    every number came back exactly); a cell without samples, or whose samples fail their hash,
    has that one problem."""
    from prt_bench.suite.reference import read_records

    out: dict[str, list[str]] = {}
    for cell_id, record in read_records(results).items():
        if record.get("kind") != "eval":
            continue
        try:
            out[cell_id] = rescore(results, record)[1]
        except SamplesError as e:
            out[cell_id] = [str(e)]
    return out
