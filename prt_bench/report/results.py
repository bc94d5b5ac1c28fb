"""Read a results folder (cells/*.json, table.csv, profile/*.json) into tidy tables.

One row per evaluation cell: its metric value and standard error.  Seeds are then
aggregated (mean, sample std over seeds); the error bar the report draws is the std over
seeds when there is more than one seed, else the evaluator's standard error (lm-eval's
`<metric>_stderr,<filter>`), else a binomial standard error when the cell records how many
examples it scored, else none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prt_bench import methods
from prt_bench.io import CELL_SCHEMA, PROFILE_SCHEMA, read_json


# Method names of the results store, in the order the report shows them, and their labels.
METHODS = methods.METHODS
METHOD_LABELS = methods.LABELS
KEY = ["modality", "task", "method", "source", "target", "alpha", "lam", "lam_swept"]


@dataclass
class Results:
    """Everything the report needs from one results folder."""

    root: Path
    suite: str
    cells: list[dict[str, Any]]  # the raw cell records (eval and train)
    rows: pd.DataFrame  # one row per evaluation cell
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # modality -> profile JSON
    warnings: list[str] = field(default_factory=list)

    @property
    def agg(self) -> pd.DataFrame:
        return aggregate(self.rows)


def stderr_key(metric: str) -> str:
    """lm-eval names the error of `exact_match,strict-match` `exact_match_stderr,strict-match`."""
    name, sep, filt = metric.partition(",")
    return f"{name}_stderr{sep}{filt}"


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None  # lm-eval writes "N/A" for errors it could not compute
    return v if math.isfinite(v) else None


def _sample_count(cell: dict[str, Any], metrics: dict[str, Any]) -> float | None:
    for holder, key in ((metrics, "n"), (metrics, "n_samples"), (cell, "n_samples"), (cell.get("timing") or {}, "n")):
        n = _number(holder.get(key))
        if n and n > 0:
            return n
    return None


def cell_row(cell: dict[str, Any]) -> dict[str, Any] | None:
    """The report's row for one finished evaluation cell, or None when it has no metric."""
    if cell.get("status", "done") != "done" or cell.get("kind", "eval") != "eval":
        return None
    results = cell.get("results") or {}
    task = cell.get("task")
    metrics = results.get(task)
    if metrics is None and len(results) == 1:
        metrics = next(iter(results.values()))
    if not isinstance(metrics, dict):
        return None
    metric = cell.get("primary_metric")
    value = _number(metrics.get(metric)) if metric else None
    if value is None:
        return None
    se = _number(metrics.get(stderr_key(metric)))
    if se is None:
        n = _sample_count(cell, metrics)
        if n and 0.0 <= value <= 1.0:
            se = math.sqrt(value * (1.0 - value) / n)
    timing = cell.get("timing") or {}
    alpha = _number(cell.get("alpha"))
    lam = _number((cell.get("config") or {}).get("lam")) if cell.get("method") in ("prt", "eft") else None
    return {
        "cell_id": cell.get("cell_id"),
        "suite": cell.get("suite"),
        "modality": cell.get("modality"),
        "task": task,
        "scenario": cell.get("scenario"),
        "method": cell.get("method"),
        "source": cell.get("source"),
        "target": cell.get("target"),
        "alpha": 0.0 if alpha is None else alpha,
        "lam": lam if cell.get("method") in ("prt", "eft") else 0.0,  # the λ at inference (0: not PRT or EFT)
        "lam_swept": False,                      # set by load_results: a λ other than the reward's trained one
        "seed": cell.get("seed", 0),
        "metric": metric,
        "value": value,
        "stderr": se,
        "wall_s": _number(timing.get("wall_s")),
        "peak_mem_mb": _number(timing.get("peak_mem_mb")),
    }


# table.csv has one row per (cell, metric) and no primary metric: these are preferred, in order.
PREFERRED_METRICS = ("exact_match,strict-match", "acc1,none", "acc,none", "exact_match,flexible-extract",
                     "prompt_level_strict_acc,none")


def _rows_from_table(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    missing = {"task", "method", "target", "value"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: table.csv lacks columns {sorted(missing)}")
    if "metric" in df.columns:
        keep = []
        for _, group in df.groupby("task", dropna=False):
            metrics = list(dict.fromkeys(group["metric"]))
            metric = next((m for m in PREFERRED_METRICS if m in metrics), sorted(map(str, metrics))[0])
            keep.append(group[group["metric"] == metric])
        df = pd.concat(keep) if keep else df
    for col in ("modality", "scenario", "source", "metric", "stderr", "alpha", "seed", "suite", "cell_id"):
        if col not in df.columns:
            df[col] = None
    df["lam"], df["lam_swept"] = 0.0, False
    df["alpha"] = pd.to_numeric(df["alpha"], errors="coerce").fillna(0.0)
    df = df.astype(object).where(df.notna(), None)
    df["value"] = df["value"].astype(float)
    return df


def load_results(results_dir: str | Path) -> Results:
    """Read a results folder.  Cell files are the truth; table.csv is used only without them."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist")
    warnings: list[str] = []
    cells: list[dict[str, Any]] = []
    for path in sorted((root / "cells").glob("*.json")):
        try:
            cell = read_json(path)
        except (OSError, ValueError) as e:
            warnings.append(f"skipped {path.name}: not readable JSON ({e})")
            continue
        if not isinstance(cell, dict) or cell.get("schema") != CELL_SCHEMA:
            warnings.append(f"skipped {path.name}: schema is not {CELL_SCHEMA}")
            continue
        cells.append(cell)
    rows = [r for r in map(cell_row, cells) if r is not None]
    mark_swept_lams(rows, cells)
    if rows:
        df = pd.DataFrame(rows)
    elif (root / "table.csv").is_file():
        df = _rows_from_table(root / "table.csv")
    else:
        df = pd.DataFrame(columns=list(cell_row_columns()))
    df = df.astype(object).where(df.notna(), None)
    for col in ("value", "stderr", "alpha", "lam", "wall_s", "peak_mem_mb"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["alpha"] = df["alpha"].fillna(0.0)
    df["lam"] = df["lam"].fillna(0.0)
    df["lam_swept"] = df["lam_swept"].fillna(False).astype(bool)

    profiles: dict[str, dict[str, Any]] = {}
    for path in sorted((root / "profile").glob("*.json")):
        try:
            prof = read_json(path)
        except (OSError, ValueError) as e:
            warnings.append(f"skipped profile {path.name}: not readable JSON ({e})")
            continue
        if isinstance(prof, dict) and prof.get("schema") == PROFILE_SCHEMA and isinstance(prof.get("rows"), list):
            profiles[str(prof.get("modality") or path.stem)] = prof
        else:
            warnings.append(f"skipped profile {path.name}: schema is not {PROFILE_SCHEMA}")

    suites = sorted({c.get("suite") for c in cells if c.get("suite")} | set(df["suite"].dropna()))
    suite = suites[0] if len(suites) == 1 else (", ".join(suites) if suites else root.name)
    return Results(root=root, suite=suite, cells=cells, rows=df, profiles=profiles, warnings=warnings)


def probes_of(records) -> dict[str, str]:
    """Probe task -> the task whose knowledge it probes (a suite task's ``probe_of``), read from
    evaluation cells' configs (stored records or a submission's cells)."""
    return {c["task"]: probed for c in records
            if (probed := ((c.get("config") or {}).get("task_config") or {}).get("probe_of"))}


class Items:
    """The per-sample scores behind the report's values: cells -> a ``[seeds, items]`` matrix of
    each item's value of the cell's primary metric (``prt_bench.suite.samples``), items in one
    order.  None wherever a cell has no usable per-sample records (older results, a damaged file)."""

    def __init__(self, res: Results):
        self.root = res.root
        self.records = {c.get("cell_id"): c for c in res.cells if c.get("kind") == "eval"}
        self.probe_of = probes_of(self.records.values())
        self._scores: dict[tuple[str, str | None], dict[str, float] | None] = {}
        self._rows: dict[str, tuple[dict[str, Any], list[dict[str, Any]]] | None] = {}
        self.problems: list[str] = []

    def _cell(self, cell_id: str, metric: str | None = None) -> dict[str, float] | None:
        """The cell's items' values of ``metric`` (default: the cell's primary metric)."""
        key = (cell_id, metric)
        if key not in self._scores:
            from prt_bench.suite import modalities

            record, read, scores = self.records.get(cell_id), self._read(cell_id), None
            if read is not None:
                try:
                    scores = modalities.get(record["modality"]).item_scores(*read, metric or record["primary_metric"])
                except KeyError as e:
                    self.problems.append(str(e))
            self._scores[key] = scores
        return self._scores[key]

    def _read(self, cell_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """(header, rows) of the cell's per-sample records, read once; None without usable ones."""
        if cell_id not in self._rows:
            from prt_bench.suite import samples

            record, self._rows[cell_id] = self.records.get(cell_id), None
            if record is not None and record.get("samples"):
                try:
                    self._rows[cell_id] = samples.read(self.root, record)
                except samples.SamplesError as e:
                    self.problems.append(str(e))
        return self._rows[cell_id]

    def header(self, cell_id: str) -> dict[str, Any] | None:
        """The header of the cell's per-sample records (what the evaluator recorded beside its rows)."""
        read = self._read(cell_id)
        return None if read is None else read[0]

    def matrix(self, cells, metric: str | None = None) -> tuple[list[str], np.ndarray] | None:
        """(item ids, [seeds, items]) of the cells of one value; repeated cells of a seed averaged."""
        by_seed: dict[Any, list[dict[str, float]]] = {}
        for cell_id, seed in cells or ():
            scores = self._cell(cell_id, metric)
            if scores is None:
                return None
            by_seed.setdefault(seed, []).append(scores)
        if not by_seed:
            return None
        items = sorted(next(iter(by_seed.values()))[0], key=_item_order)
        rows = []
        for group in by_seed.values():
            if any(set(g) != set(items) for g in group):
                return None  # not scored on the same items
            rows.append([sum(g[i] for g in group) / len(group) for i in items])
        return items, np.asarray(rows, dtype=float)

    def pair(self, cells_a, cells_b):
        """The two matrices of values scored on the same items, else None."""
        a, b = self.matrix(cells_a), self.matrix(cells_b)
        if a is None or b is None or a[0] != b[0]:
            return None
        return a[1], b[1]

    def metrics(self, cells) -> list[str]:
        """The metrics every one of the cells gives: those its results hold ("name,filter", the
        derived ones too) and those its modality computes from its per-sample records."""
        from prt_bench.suite import modalities

        common, extra = None, None
        for cell_id, _ in cells or ():
            record = self.records.get(cell_id) or {}
            names = {k for r in (record.get("results") or {}).values() if isinstance(r, dict) for k in r
                     if "," in k and "_stderr," not in k}
            read = self._read(cell_id)
            more = set(modalities.get(record["modality"]).sample_metrics(*read)) if read is not None else set()
            common = names if common is None else common & names
            extra = more if extra is None else extra & more
        return sorted(common or ()) + sorted((extra or set()) - (common or set()))  # the results' first


def _item_order(item: str):
    return (0, int(item), "") if item.lstrip("-").isdigit() else (1, 0, item)


def mark_swept_lams(rows: list[dict[str, Any]], cells: list[dict[str, Any]]) -> None:
    """A PRT cell evaluated at another λ than its reward was trained with (read from the reward's
    training record, 1 when it records none or is absent) belongs to the λ sweep, not to the
    main tables; so does an EFT cell at another λ than its FT model's training record."""
    trained = {c.get("cell_id"): _number(((c.get("config") or {}).get("train") or {}).get("lam"))
               for c in cells if c.get("kind") == "train"}
    by_id = {c.get("cell_id"): c for c in cells}
    for row in rows:
        if row["method"] not in ("prt", "eft"):
            continue
        role = "reward" if row["method"] == "prt" else "ft"
        lam = trained.get(((by_id.get(row["cell_id"]) or {}).get("config") or {}).get("trained", {}).get(role)) or 1.0
        if row["lam"] is None:  # a record that names no λ ran at the trained one
            row["lam"] = lam
        row["lam_swept"] = abs(row["lam"] - lam) > 1e-12


def cell_row_columns() -> tuple[str, ...]:
    return (
        "cell_id", "suite", "modality", "task", "scenario", "method", "source", "target",
        "alpha", "lam", "lam_swept", "seed", "metric", "value", "stderr", "wall_s", "peak_mem_mb",
    )


def aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per (modality, task, method, source, target, alpha).

    Columns: mean, std (NaN for one seed), stderr (standard error of the seed mean from the
    evaluator's errors), n_seeds, err (the error bar: std over seeds, else stderr), scenario,
    metric, cells ((cell id, seed) of each cell behind the value).  Repeated cells of one seed are averaged first so they do not count as seeds.
    """
    cols = KEY + ["scenario", "metric", "mean", "std", "stderr", "n_seeds", "err", "cells"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    df = rows.copy()
    if "lam" not in df.columns:  # rows made before the λ sweep existed
        df["lam"] = 0.0
    if "lam_swept" not in df.columns:
        df["lam_swept"] = False
    for col in ("modality", "source", "target", "scenario", "metric"):
        df[col] = df[col].fillna("")
    if "cell_id" not in df.columns:
        df["cell_id"] = None
    per_seed = (
        df.groupby(KEY + ["seed"], dropna=False)
        .agg(value=("value", "mean"), stderr=("stderr", "mean"), scenario=("scenario", _first), metric=("metric", _first),
             cells=("cell_id", lambda ids: tuple(i for i in ids if i)))
        .reset_index()
    )

    def combine(g: pd.DataFrame) -> pd.Series:
        vals = g["value"].to_numpy(dtype=float)
        ses = g["stderr"].to_numpy(dtype=float)
        n = len(vals)
        std = float(vals.std(ddof=1)) if n > 1 else math.nan
        se = float(math.sqrt((ses**2).sum()) / n) if n and not pd.isna(ses).any() else math.nan
        return pd.Series(
            {
                "scenario": _first(g["scenario"]),
                "metric": _first(g["metric"]),
                "mean": float(vals.mean()),
                "std": std,
                "stderr": se,
                "n_seeds": n,
                "err": std if n > 1 else se,
                # (cell id, seed) of every cell behind the value: where its per-sample records are
                "cells": tuple((c, seed) for ids, seed in zip(g["cells"], g["seed"]) for c in ids),
            }
        )

    out = (per_seed.groupby(KEY, dropna=False)[["value", "stderr", "scenario", "metric", "cells", "seed"]]
           .apply(combine).reset_index())
    return out[cols]


def _first(values: pd.Series) -> str:
    for v in values:
        if v:
            return v
    return ""


def fmt(mean: float | None, err: float | None = None, digits: int = 3) -> str:
    """`0.423 ± 0.012`, `0.423` without an error, `–` without a value."""
    if mean is None or pd.isna(mean):
        return "–"
    if err is None or pd.isna(err):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {err:.{digits}f}"


def fmt_alpha(alpha: float) -> str:
    if alpha == 0:
        return "0"
    return f"{alpha:g}"
